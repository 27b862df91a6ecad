package messenger

import "bytes"

// The scan below finds where each event object lies in a webhook body, so
// Event.Raw keeps the bytes Meta sent (and signed) rather than a
// re-encoding. It runs only on bodies fastjson has already accepted, and
// like fastjson it takes the first of repeated keys. Keys written with
// escapes are not recognised; Parse then re-encodes those events instead.

// span is a half-open byte range of the body.
type span struct{ start, end int }

// entrySpans are one entry's event spans by channel, and the spans of its
// id and time values (end 0: not found), which the envelope to the bot
// repeats as Meta wrote them.
type entrySpans struct {
	lists    [channels][]span
	id, time span
}

// spans holds the scan's findings, per entry.
type spans []entrySpans

// of returns the raw bytes of entry i's events on channel ch if the scan
// found exactly n of them, else nil.
func (s spans) of(body []byte, i int, ch Channel, n int) [][]byte {
	if i >= len(s) || int(ch) >= channels || len(s[i].lists[ch]) != n {
		return nil
	}
	out := make([][]byte, n)
	for j, sp := range s[i].lists[ch] {
		out[j] = body[sp.start:sp.end]
	}
	return out
}

// entry returns entry i's id and time values as written, nil when the scan
// did not find them.
func (s spans) entry(body []byte, i int) (id, time []byte) {
	if i >= len(s) {
		return nil, nil
	}
	if sp := s[i].id; sp.end > 0 {
		id = body[sp.start:sp.end]
	}
	if sp := s[i].time; sp.end > 0 {
		time = body[sp.start:sp.end]
	}
	return id, time
}

// events is how many event spans the scan found.
func (s spans) events() int {
	n := 0
	for _, e := range s {
		for _, l := range e.lists {
			n += len(l)
		}
	}
	return n
}

// eventSpans scans a body for entry[].messaging[], standby[] and
// changes[], and each entry's id and time, in one pass: the walk descends
// into the values it needs and skips the rest, so no byte is scanned
// twice.
func eventSpans(b []byte) spans {
	var out spans
	seenEntry := false
	members(b, skipSpace(b, 0), func(key []byte, start int) (int, bool) {
		if seenEntry || string(key) != "entry" {
			return skipValue(b, start)
		}
		seenEntry = true
		return elements(b, start, func(start int) (int, bool) {
			if len(out) > MaxEvents {
				// Parse refuses a body of more entries than events
				// allowed: no need to scan (and keep) the rest.
				return 0, false
			}
			var e entrySpans
			var seen [channels]bool
			end, ok := members(b, start, func(key []byte, start int) (int, bool) {
				ch := -1
				switch string(key) {
				case "messaging":
					ch = int(Messaging)
				case "standby":
					ch = int(Standby)
				case "changes":
					ch = int(Changes)
				case "id", "time":
					end, ok := skipValue(b, start)
					if at := &e.id; ok {
						if key[0] == 't' {
							at = &e.time
						}
						if at.end == 0 {
							*at = span{start, end}
						}
					}
					return end, ok
				}
				if ch < 0 || seen[ch] {
					return skipValue(b, start)
				}
				seen[ch] = true
				return elements(b, start, func(start int) (int, bool) {
					end, ok := skipValue(b, start)
					if ok {
						e.lists[ch] = append(e.lists[ch], span{start, end})
					}
					return end, ok
				})
			})
			out = append(out, e)
			return end, ok
		})
	})
	return out
}

func skipSpace(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' { // most often: no space at all
		return i
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
// It jumps from quote to quote: a quote ends the string unless an odd
// number of backslashes precede it.
func skipString(b []byte, i int) (int, bool) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		j += k
		escapes := 0
		for p := j - 1; b[p] == '\\'; p-- { // b[i] is the opening quote: it stops the count
			escapes++
		}
		if escapes%2 == 0 {
			return j + 1, true
		}
		j++
	}
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j, j > i
}

// members walks the object at b[i]: fn gets each member's key as written
// (without quotes) and where its value starts, and returns where the value
// ends. members returns the index after the object.
func members(b []byte, i int, fn func(key []byte, start int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		kend, ok := skipString(b, i)
		if !ok {
			return 0, false
		}
		key := b[i+1 : kend-1]
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		end, ok := fn(key, skipSpace(b, i+1))
		if !ok {
			return 0, false
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	if i >= len(b) || b[i] != '}' {
		return 0, false
	}
	return i + 1, true
}

// elements walks the array at b[i]: fn gets where each element starts and
// returns where it ends. elements returns the index after the array.
func elements(b []byte, i int, fn func(start int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		end, ok := fn(i)
		if !ok {
			return 0, false
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	if i >= len(b) {
		return 0, false
	}
	return i + 1, true
}
