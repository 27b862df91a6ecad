package messenger

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// validateCases are bodies with the answer every strict JSON validator
// gives; validate must give it too.
var validateCases = []struct {
	body  string
	valid bool
}{
	{`{}`, true}, {`[]`, true}, {`null`, true}, {`""`, true}, {` 0 `, true}, {`-0.5e+10`, true},
	{`{"a":[1,true,false,null,"x",{"b":{}}],"c":-1E-2}`, true},
	{"\t\r\n{ \"a\" : [ ] , \"b\" : { } }\n", true},
	{`"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"`, true},
	{`"\ud800"`, true}, // a lone surrogate escape is valid JSON; its bytes go to the bot as sent
	{"\"caf\xc3\xa9\"", true},
	{"\"\xff\"", true}, // UTF-8 is not checked, as before
	{``, false}, {` `, false}, {`{`, false}, {`[`, false}, {`}`, false}, {`{]`, false}, {`[}`, false},
	{`{"a"}`, false}, {`{"a":}`, false}, {`{a:1}`, false}, {`{"a":1,}`, false}, {`[1,]`, false}, {`[,1]`, false},
	{`[1 2]`, false}, {`{"a":1 "b":2}`, false}, {`{} {}`, false}, {`{}x`, false}, {`{"a":1}}`, false},
	{`01`, false}, {`-`, false}, {`-a`, false}, {`1.`, false}, {`.5`, false}, {`1e`, false}, {`1e+`, false},
	{`+1`, false}, {`0x10`, false}, {`1.5.5`, false}, {`NaN`, false}, {`Infinity`, false},
	{`tru`, false}, {`truex`, false}, {`nul`, false}, {`falsey`, false}, {`True`, false},
	{`"abc`, false}, {`"\"`, false}, {`"\`, false}, {`"\x"`, false}, {`"\u12"`, false}, {`"\u12g4"`, false},
	{"\"a\nb\"", false}, {"\"\x00\"", false}, {"{\"\x01\":1}", false}, {`'a'`, false},
}

func TestValidate(t *testing.T) {
	for _, c := range validateCases {
		err := validate([]byte(c.body))
		if (err == nil) != c.valid {
			t.Errorf("validate(%q) = %v; want valid %v", c.body, err, c.valid)
		}
		if json.Valid([]byte(c.body)) != c.valid {
			t.Errorf("encoding/json disagrees with the table on %q", c.body)
		}
		if (fastjson.Validate(c.body) == nil) != c.valid {
			t.Errorf("fastjson disagrees with the table on %q", c.body)
		}
	}
	// fastjson's validator missed a control character in a string with
	// an escape; validate does not.
	if body := "\"\x03\\b\""; validate([]byte(body)) == nil || json.Valid([]byte(body)) || fastjson.Validate(body) != nil {
		t.Errorf("control character before an escape: validate %v, fastjson %v", validate([]byte(body)), fastjson.Validate(body))
	}
}

// The depth limit is exactly MaxDepth, counted over arrays and objects
// alike, and brackets inside strings do not count.
func TestValidateDepthLimit(t *testing.T) {
	opening := func(depth int) string {
		var b strings.Builder
		for i := range depth {
			if i%2 == 0 {
				b.WriteString(`{"k":`)
			} else {
				b.WriteString(`[`)
			}
		}
		return b.String()
	}
	nest := func(depth int) string {
		var b strings.Builder
		b.WriteString(opening(depth))
		b.WriteString(`"[[[{{{"`)
		for i := depth - 1; i >= 0; i-- {
			if i%2 == 0 {
				b.WriteString(`}`)
			} else {
				b.WriteString(`]`)
			}
		}
		return b.String()
	}
	if err := validate([]byte(nest(MaxDepth))); err != nil {
		t.Errorf("depth %d refused: %v", MaxDepth, err)
	}
	err := validate([]byte(nest(MaxDepth + 1)))
	var se *syntaxError
	if !errors.As(err, &se) || !strings.Contains(se.msg, "deeper") {
		t.Fatalf("depth %d: %v; want a depth error", MaxDepth+1, err)
	}
	if want := len(opening(MaxDepth)); se.offset != want {
		t.Errorf("depth error at offset %d; want %d, the opening bracket past the limit", se.offset, want)
	}
}

// A body denser than one value per 4 bytes (past the first 1024 values)
// is refused; Meta's are far sparser.
func TestValidateValueLimit(t *testing.T) {
	dense := func(n int) []byte { return []byte("[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]") }
	if err := validate(dense(extraValues - 1)); err != nil {
		t.Errorf("%d values refused: %v", extraValues, err)
	}
	if err := validate(dense(4 * extraValues)); err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Errorf("%d values in %d bytes: %v; want refused", 4*extraValues, len(dense(4*extraValues)), err)
	}
	sparse := []byte("[" + strings.TrimSuffix(strings.Repeat(`"123456",`, 4*extraValues), ",") + "]")
	if err := validate(sparse); err != nil {
		t.Errorf("one value per 9 bytes refused: %v", err)
	}
	// Deliveries shaped like Meta's, the densest (a read receipt) among
	// them, hold one value per 14 bytes or more.
	for _, bc := range benchBodies() {
		if _, values := jsonShape(bc.body); values*14 > len(bc.body) {
			t.Errorf("%s: %d values in %d bytes", bc.name, values, len(bc.body))
		}
	}
}

// hostileBodies are signed bodies that cost fastjson's validator or
// parser quadratic time or hundreds of times their size in memory, each
// about size bytes long.
func hostileBodies(size int) map[string][]byte {
	const head = `{"object":"page","entry":[{"id":"1","messaging":[`
	const tail = `]}]}`
	repeat := func(unit string) []byte {
		n := (size - len(head) - len(tail)) / (len(unit) + 1)
		return []byte(head + strings.TrimSuffix(strings.Repeat(unit+",", n), ",") + tail)
	}
	return map[string][]byte{
		"deep unclosed":  []byte(head + strings.Repeat("[", size-len(head))),
		"deep closed":    []byte(head + strings.Repeat("[", (size-len(head))/2) + strings.Repeat("]", (size-len(head))/2) + tail),
		"deep objects":   []byte(head + strings.Repeat(`{"a":`, (size-len(head))/6) + "1" + strings.Repeat("}", (size-len(head))/6) + tail),
		"empty events":   repeat(`{}`),
		"numbers":        []byte(head + `{"x":[` + strings.TrimSuffix(strings.Repeat("1,", (size-len(head))/2-8), ",") + `]}` + tail),
		"empty entries":  []byte(`{"object":"page","entry":[` + strings.TrimSuffix(strings.Repeat(`{"id":"1234567"},`, size/17), ",") + `]}`),
		"long object":    []byte(`{"object":"` + strings.Repeat("x", size) + `","entry":[]}`),
		"bad escape run": []byte(head + `{"x":"` + strings.Repeat(`\n`, size/2) + `\q"}` + tail),
		"unclosed text":  []byte(head + `{"x":"` + strings.Repeat(`\"`, size/2)),
		"bad literal":    []byte(head + `{"x":t` + strings.Repeat("r", size) + `}` + tail),
	}
}

// Every hostile body is refused with a short error that quotes nothing
// of it, and reading it costs a bounded multiple of its size in memory.
// (Before, a 1 MB unclosed nesting ran for over ten minutes and its error
// was 46 times the body.)
func TestHostileBodiesAreRefusedCheaply(t *testing.T) {
	const size = 1 << 20
	for name, body := range hostileBodies(size) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		evs, err := ParseShared(body)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: accepted, %d events", name, len(evs))
			continue
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownObject) {
			t.Errorf("%s: unclassified error %v", name, err)
		}
		if len(err.Error()) > 120 {
			t.Errorf("%s: error of %d bytes: %.200s", name, len(err.Error()), err)
		}
		// A refused body costs at most the parser's values: one per 8
		// bytes, 80 bytes each, in an array that grows by a quarter at
		// a time (5 times its final size allocated on a fresh parser):
		// 50 times the body, and a little more for objects' members.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 80*size {
			t.Errorf("%s: %d MB allocated for a %d MB body", name, alloc>>20, size>>20)
		}
	}
}

// The most events a body may hold, each as small as an event can be, are
// read at a bounded cost per event; one more event, or one more entry,
// and the body is refused.
func TestManySmallEventsCostBoundedMemory(t *testing.T) {
	const event = `{"sender":{"id":"6789012345678901"},"read":{"watermark":1}}`
	body := []byte(`{"object":"page","entry":[{"id":"1","messaging":[` +
		strings.TrimSuffix(strings.Repeat(event+",", MaxEvents), ",") + `]}]}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	evs, err := ParseShared(body)
	runtime.ReadMemStats(&after)
	if err != nil || len(evs) != MaxEvents {
		t.Fatalf("%d events, %v; want %d", len(evs), err, MaxEvents)
	}
	// About 1.5 KB per event (the Event, the parser's values, the spans)
	// whatever the event's size, 2.5 KB on a fresh parser, whose values
	// grow by a quarter at a time: 20 MB is far more than any body costs.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > MaxEvents*4096 {
		t.Errorf("%d bytes allocated for %d events in %d bytes", alloc, MaxEvents, len(body))
	}
	more := []byte(`{"object":"page","entry":[{"id":"1","messaging":[` + event + `],"standby":[` +
		strings.TrimSuffix(strings.Repeat(event+",", MaxEvents), ",") + `]}]}`)
	if _, err := ParseShared(more); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "events") {
		t.Errorf("%d events: %v; want refused", MaxEvents+1, err)
	}
	entries := []byte(`{"object":"page","entry":[` + strings.TrimSuffix(strings.Repeat(`{"id":"104455667788990"},`, MaxEvents+1), ",") + `]}`)
	if _, err := ParseShared(entries); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "entries") {
		t.Errorf("%d entries: %v; want refused", MaxEvents+1, err)
	}
}

// jsonShape is a reference for validate's limits: the nesting depth and
// the number of values of a valid body, from encoding/json's tokens.
func jsonShape(b []byte) (depth, values int) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct{ object, wantKey bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return depth, values
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].object && stack[top].wantKey && tok != json.Delim('}') {
			stack[top].wantKey = false // a key
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			values++
			stack = append(stack, frame{object: tok == json.Delim('{'), wantKey: true})
			depth = max(depth, len(stack))
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
		default:
			values++
		}
		if top := len(stack) - 1; top >= 0 && stack[top].object {
			stack[top].wantKey = true
		}
	}
}

// FuzzValidate checks validate against encoding/json: it accepts only
// valid JSON, and every valid body within the limits; against fastjson's
// validator, which it replaces, on small bodies: it accepts nothing that
// one refused; and its errors are short.
func FuzzValidate(f *testing.F) {
	for _, c := range validateCases {
		f.Add([]byte(c.body))
	}
	f.Add([]byte(batch))
	for _, body := range hostileBodies(200) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := validate(b)
		valid := json.Valid(b)
		if err == nil && !valid {
			t.Fatalf("validate accepted invalid JSON %q", b)
		}
		if err != nil {
			if len(err.Error()) > 80 {
				t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
			}
			if valid {
				if depth, values := jsonShape(b); depth <= MaxDepth && values <= len(b)/bytesPerValue+extraValues {
					t.Fatalf("validate refused valid JSON within the limits (depth %d, %d values): %v\n%q", depth, values, err, b)
				}
			}
		}
		// Nothing fastjson's validator refused is accepted now. (It
		// accepted some invalid JSON: a control character in a string
		// that also holds an escape. encoding/json, above, rules.)
		if len(b) < 1024 && err == nil && fastjson.ValidateBytes(b) != nil {
			t.Fatalf("fastjson's validator refused what validate accepts: %v: %q", fastjson.ValidateBytes(b), b)
		}
	})
}
