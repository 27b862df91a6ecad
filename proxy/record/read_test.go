package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const good = `{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging","event":{"sender":{"id":"2"},"message":{"text":"hi"}}}`

// collect reads a recording and renders every line: "N ok page/channel"
// or the line's error.
func collect(t *testing.T, in string) []string {
	t.Helper()
	var out []string
	err := ReadAll(strings.NewReader(in), func(l Line) error {
		if l.Err != nil {
			var le *LineError
			if !errors.As(l.Err, &le) || le.Line != l.Num {
				t.Errorf("line %d: error %T %v is not a *LineError for the line", l.Num, l.Err, l.Err)
			}
			out = append(out, l.Err.Error())
			return nil
		}
		out = append(out, fmt.Sprintf("line %d: ok %s/%s", l.Num, l.Page, l.Channel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadAllBadLines(t *testing.T) {
	in := strings.Join([]string{
		good,
		``,
		`not json`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"standby","event":{"sender":{"id":"2"}}}`,
		`{"object":"page","page":"1","channel":"messaging","event":{}}`,
		`{"at":"yesterday","object":"page","page":"1","channel":"messaging","event":{}}`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"inbox","event":{}}`,
		`{"at":"2026-03-01T09:00:00Z","object":"user","page":"1","channel":"messaging","event":{}}`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging","event":"text"}`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"","channel":"messaging","event":{}}`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging"}`,
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging","event":{"sender":`, // cut by a crash
		`   `,
		good + "\r",
		`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging","event":{},"future":true}`,
		`[]`,
	}, "\n")
	got := collect(t, in)
	want := []string{
		"line 1: ok 1/messaging",
		`line 3: not a recorded event: invalid character 'o' in literal null (expecting 'u')`,
		"line 4: ok 1/standby",
		`line 5: missing "at"`,
		`line 6: invalid "at" "yesterday": want an RFC 3339 time`,
		`line 7: invalid "channel" "inbox": want messaging, standby or changes`,
		`line 8: invalid "object" "user": want page or instagram`,
		`line 9: "event" must be a JSON object`,
		`line 10: missing "page"`,
		`line 11: "event" must be a JSON object`,
		`line 12: not a recorded event: unexpected end of JSON input`,
		"line 14: ok 1/messaging",
		"line 15: ok 1/messaging",
		`line 16: not a recorded event: json: cannot unmarshal array into Go value of type record.lineJSON`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Replay calls ParseEvent on every line; a bad line's error still names
// the line.
func TestLineParseEventNamesTheLine(t *testing.T) {
	in := good + "\n" + strings.Replace(good, `"text":"hi"}}`, `"text":"hi"},}`, 1) + "\n"
	var errs []string
	err := ReadAll(strings.NewReader(in), func(l Line) error {
		if _, err := l.ParseEvent(); err != nil {
			errs = append(errs, err.Error())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "line 2: ") {
		t.Errorf("errors %q; want one naming line 2", errs)
	}
}

func TestReadAllLastLineWithoutNewline(t *testing.T) {
	got := collect(t, good+"\n"+good)
	if len(got) != 2 || got[1] != "line 2: ok 1/messaging" {
		t.Errorf("got %q", got)
	}
}

func TestReadAllTooLongLine(t *testing.T) {
	long := `{"at":"` + strings.Repeat("x", MaxLineBytes) + `"}`
	got := collect(t, good+"\n"+long+"\n"+good+"\n")
	want := []string{"line 1: ok 1/messaging", fmt.Sprintf("line 2: longer than %d bytes", MaxLineBytes), "line 3: ok 1/messaging"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q", got)
	}
}

func TestReadAllStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := ReadAll(strings.NewReader(good+"\n"+good+"\n"), func(Line) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d lines; want stop after 1", err, n)
	}
}

func TestReadAllReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader(good+"\n"), iotest.ErrReader(errors.New("disk on fire")))
	n := 0
	err := ReadAll(r, func(Line) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "line 2") || n != 1 {
		t.Errorf("err %v after %d lines", err, n)
	}
}

// FuzzReadAll feeds arbitrary files to ReadAll: it must not panic, line
// numbers must increase, and a line it accepts must hold a JSON object
// that ParseEvent reads without panicking and that records back to the
// same line.
func FuzzReadAll(f *testing.F) {
	f.Add([]byte(good + "\n"))
	f.Add([]byte(good + "\r\n\n" + good))
	f.Add([]byte("\n\n{}\n[]\nnull\n"))
	f.Add([]byte(`{"at":"2026-03-01T09:00:00.5+02:00","object":"instagram","page":"9","channel":"standby","event":{"postback":{"payload":"X"}},"at":"2026-03-01T09:00:00Z"}`))
	f.Add([]byte(`{"at":"2026-03-01T09:00:00Z","object":"page","page":"1","channel":"messaging","event":{"sender":{"id":1e400}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		last := 0
		err := ReadAll(bytes.NewReader(data), func(l Line) error {
			if l.Num <= last {
				t.Fatalf("line number %d after %d", l.Num, last)
			}
			last = l.Num
			if l.Err != nil {
				if _, err := l.ParseEvent(); err == nil {
					t.Fatal("ParseEvent of a bad line succeeded")
				}
				return nil
			}
			if !json.Valid(l.Event) || l.Event[0] != '{' || l.Page == "" {
				t.Fatalf("accepted line %d: %+v", l.Num, l)
			}
			ev, err := l.ParseEvent()
			if err != nil {
				return nil // a line can be well formed around an event Baton would refuse
			}
			line, err := appendLine(nil, &ev, l.At)
			if err != nil {
				t.Fatalf("re-recording line %d: %v", l.Num, err)
			}
			var again Line
			if err := ReadAll(bytes.NewReader(line), func(l Line) error { again = l; return nil }); err != nil || again.Err != nil {
				t.Fatalf("re-recorded line %d does not read back: %v %v\n%s", l.Num, err, again.Err, line)
			}
			if !again.At.Equal(l.At) || again.Page != l.Page || again.Object != l.Object || again.Channel != l.Channel {
				t.Fatalf("round trip changed line %d: %+v -> %+v", l.Num, l, again)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ReadAll of in-memory data: %v", err)
		}
	})
}
