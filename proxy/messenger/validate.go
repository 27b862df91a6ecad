package messenger

import "strconv"

// Limits on a webhook body, checked before anything is built from it, so
// that what a body costs to refuse or to read grows with its size alone,
// whatever its shape.
const (
	// MaxDepth is how deeply arrays and objects may nest. Meta's deepest
	// deliveries (the buttons of a template in an echo, the follow-up of
	// a feedback answer) nest about a dozen levels; 64 leaves room for
	// fields Meta adds later and keeps the parser's recursion, which
	// follows the nesting, short and far below its own limit of 300.
	MaxDepth = 64
	// MaxEvents is how many events one delivery may hold: five times
	// the 1000 updates Meta documents as the most one POST aggregates.
	// Each event costs a queue record and a decoded copy, some hundreds
	// of bytes however small its JSON, so a body of empty events would
	// otherwise cost hundreds of times its size.
	MaxEvents = 5000
	// bytesPerValue and extraValues bound how many JSON values a body
	// may hold: one per 8 bytes, plus 1024 for small bodies. Meta's
	// deliveries hold one per 14 to 50 bytes (page ids, PSIDs, mids and
	// timestamps are long; the densest, a read receipt, has 15 values in
	// 222 bytes); a body of bare numbers or empty objects holds one per 2
	// or 3. The parser builds every value (80 bytes, and its growing
	// arrays keep the ones they outgrew), so the values, not the bytes,
	// are what a body costs in memory.
	bytesPerValue = 8
	extraValues   = 1024
)

// syntaxError says why a body was refused and where, in a few words of
// its own: it never quotes the body, so an answer or a log line that
// carries it stays short whatever the body holds.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return "offset " + strconv.Itoa(e.offset) + ": " + e.msg
}

func errAt(offset int, msg string) error { return &syntaxError{offset, msg} }

// validate checks that b is exactly one JSON value (RFC 8259: no
// trailing data, no control characters or bad escapes in strings, no
// leading zeros), nested at most MaxDepth deep and with at most one value
// per bytesPerValue bytes. It makes one pass over b with no recursion and
// no allocation unless it fails, so its cost is linear in len(b) whatever
// the nesting; the parser that runs after it then never meets a body
// deeper or denser than the limits.
//
// Like the fastjson validator it replaces, it does not check that strings
// are valid UTF-8: the bot receives the bytes as Meta sent them. Unlike
// that one, it refuses a control character in a string that also holds
// an escape, as RFC 8259 says (no JSON encoder writes one).
func validate(b []byte) error {
	maxValues := len(b)/bytesPerValue + extraValues
	var objects uint64 // bit d is set when the container at depth d+1 is an object
	depth, values := 0, 0
	i := skipSpace(b, 0)
	var err error
value: // b[i] starts a value
	for {
		if values++; values > maxValues {
			return errAt(i, "too many values for the body's size")
		}
		if i >= len(b) {
			return errAt(i, "unexpected end of body")
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == MaxDepth {
				return errAt(i, "nested deeper than "+strconv.Itoa(MaxDepth)+" levels")
			}
			if c == '{' {
				objects |= 1 << depth
			} else {
				objects &^= 1 << depth
			}
			depth++
			i = skipSpace(b, i+1)
			switch {
			case i < len(b) && c == '{' && b[i] == '}', i < len(b) && c == '[' && b[i] == ']':
				i++
				depth--
			case c == '{':
				if i, err = memberKey(b, i); err != nil {
					return err
				}
				continue value
			default:
				continue value
			}
		case '"':
			i, err = validString(b, i)
		case 't':
			i, err = literal(b, i, "true")
		case 'f':
			i, err = literal(b, i, "false")
		case 'n':
			i, err = literal(b, i, "null")
		default:
			i, err = validNumber(b, i)
		}
		if err != nil {
			return err
		}
		// A value ended at b[i]: close the containers it ends, or go on
		// to the next element of the innermost one.
		for {
			i = skipSpace(b, i)
			if depth == 0 {
				if i < len(b) {
					return errAt(i, "data after the JSON value")
				}
				return nil
			}
			if i >= len(b) {
				return errAt(i, "unexpected end of body")
			}
			inObject := objects>>(depth-1)&1 == 1
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
				if inObject {
					if i, err = memberKey(b, i); err != nil {
						return err
					}
				}
				continue value
			case '}':
				if !inObject {
					return errAt(i, "'}' closes an array")
				}
			case ']':
				if inObject {
					return errAt(i, "']' closes an object")
				}
			default:
				return errAt(i, "expected ',' or the end of the array or object")
			}
			i++
			depth--
		}
	}
}

// memberKey checks an object member's key and colon at b[i] and returns
// where its value starts.
func memberKey(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errAt(i, "expected a string key")
	}
	i, err := validString(b, i)
	if err != nil {
		return 0, err
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, errAt(i, "expected ':' after a key")
	}
	return skipSpace(b, i+1), nil
}

// validString checks the string starting at b[i] ('"') and returns the
// index after it, looking at each byte once.
func validString(b []byte, i int) (int, error) {
	start := i
	i++
	for {
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		switch {
		case i >= len(b):
			return 0, errAt(start, "unterminated string")
		case b[i] == '"':
			return i + 1, nil
		case b[i] != '\\':
			return 0, errAt(i, "control character in a string")
		case i+1 >= len(b):
			return 0, errAt(start, "unterminated string")
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
				return 0, errAt(i, `bad \u escape`)
			}
			i += 6
		default:
			return 0, errAt(i, "bad escape")
		}
	}
}

// plainByte tells the bytes a string holds as they are: all but the
// quote, the backslash and control characters.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// literal checks for true, false or null at b[i].
func literal(b []byte, i int, word string) (int, error) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return 0, errAt(i, "invalid value")
	}
	return i + len(word), nil
}

// validNumber checks the number at b[i]: an optional minus, an integer
// part without leading zeros, an optional fraction and exponent. What
// follows it is the caller's to check.
func validNumber(b []byte, i int) (int, error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return 0, errAt(start, "invalid value")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == d {
			return 0, errAt(start, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == d {
			return 0, errAt(start, "invalid number")
		}
	}
	return i, nil
}
