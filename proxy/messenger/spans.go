package messenger

// The scan below finds where each event object lies in a webhook body, so
// Event.Raw keeps the bytes Meta sent (and signed) rather than a
// re-encoding. It runs only on bodies fastjson has already accepted, and
// like fastjson it takes the first of repeated keys. Keys written with
// escapes are not recognised; Parse then re-encodes those events instead.

// span is a half-open byte range of the body.
type span struct{ start, end int }

// spans holds, per entry, the spans of its messaging and standby events.
type spans [][2][]span

// of returns the raw bytes of entry i's events on channel ch if the scan
// found exactly n of them, else nil.
func (s spans) of(body []byte, i int, ch Channel, n int) [][]byte {
	if i >= len(s) || int(ch) > 1 || len(s[i][ch]) != n {
		return nil
	}
	out := make([][]byte, n)
	for j, sp := range s[i][ch] {
		out[j] = body[sp.start:sp.end]
	}
	return out
}

// eventSpans scans a body for entry[].messaging[] and entry[].standby[].
func eventSpans(b []byte) spans {
	var out spans
	seenEntry := false
	members(b, skipSpace(b, 0), func(key []byte, start, end int) {
		if seenEntry || string(key) != "entry" {
			return
		}
		seenEntry = true
		elements(b, start, func(start, end int) {
			var lists [2][]span
			var seen [2]bool
			members(b, start, func(key []byte, start, end int) {
				ch := -1
				switch string(key) {
				case "messaging":
					ch = int(Messaging)
				case "standby":
					ch = int(Standby)
				}
				if ch < 0 || seen[ch] {
					return
				}
				seen[ch] = true
				elements(b, start, func(start, end int) {
					lists[ch] = append(lists[ch], span{start, end})
				})
			})
			out = append(out, lists)
		})
	})
	return out
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
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

// members calls fn with each member of the object at b[i]: its key as
// written (without quotes) and its value's span.
func members(b []byte, i int, fn func(key []byte, start, end int)) {
	if i >= len(b) || b[i] != '{' {
		return
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		kend, ok := skipString(b, i)
		if !ok {
			return
		}
		key := b[i+1 : kend-1]
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return
		}
		start := skipSpace(b, i+1)
		end, ok := skipValue(b, start)
		if !ok {
			return
		}
		fn(key, start, end)
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// elements calls fn with the span of each element of the array at b[i].
func elements(b []byte, i int, fn func(start, end int)) {
	if i >= len(b) || b[i] != '[' {
		return
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		end, ok := skipValue(b, i)
		if !ok {
			return
		}
		fn(i, end)
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}
