package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
)

// MaxLineBytes bounds one line of a recording. A recorded event is at most
// a webhook body (1 MiB by default); a longer line is reported as bad and
// skipped rather than read into memory.
const MaxLineBytes = 16 << 20

// Line is one line of a recording.
type Line struct {
	// Num is the line's number in the file, from 1.
	Num int
	// Err is set when the line could not be read; it is a *LineError and
	// the other fields are zero. Readers report it and go on.
	Err error

	At      time.Time // when Baton received the event
	Object  string    // "page" or "instagram"
	Page    string    // entry[].id
	Channel messenger.Channel
	Event   []byte // the event object as received
}

// ParseEvent reads the event's routing fields, as the dispatcher does
// with a queued event. Its error is a *LineError naming the line.
func (l *Line) ParseEvent() (messenger.Event, error) {
	if l.Err != nil {
		return messenger.Event{}, l.Err
	}
	ev, err := messenger.ParseEvent(l.Object, l.Page, 0, l.Channel, l.Event)
	if err != nil {
		return messenger.Event{}, &LineError{Line: l.Num, Err: fmt.Errorf("event: %w", err)}
	}
	return ev, nil
}

// LineError is a line of a recording that could not be read.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ReadAll reads a recording and calls fn for every line, in order: good
// lines and bad ones (with Line.Err set), so a damaged line (a crash in the
// middle of a write, a hand edit) is reported without hiding the rest.
// Blank lines are skipped. It stops at the first error fn returns, and
// returns it; otherwise it returns only errors reading r.
func ReadAll(r io.Reader, fn func(line Line) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for num := 1; ; num++ {
		text, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading recorded events: line %d: %w", num, err)
		}
		var line Line
		switch {
		case tooLong:
			line = Line{Num: num, Err: &LineError{Line: num, Err: fmt.Errorf("longer than %d bytes", MaxLineBytes)}}
		case len(bytes.TrimSpace(text)) == 0:
			if errors.Is(err, io.EOF) {
				return nil
			}
			continue
		default:
			line = parseLine(num, text)
		}
		if ferr := fn(line); ferr != nil {
			return ferr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// readLine returns the next line without its line ending. A line over
// MaxLineBytes is consumed and reported as tooLong. At the end of the
// input err is io.EOF, possibly along with a last line that had no
// newline.
func readLine(br *bufio.Reader) (text []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(text)+len(chunk) > MaxLineBytes+2 { // +2: the line ending
				tooLong, text = true, nil
			} else {
				text = append(text, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		text = bytes.TrimSuffix(bytes.TrimSuffix(text, []byte("\n")), []byte("\r"))
		return text, tooLong, err
	}
}

// lineJSON is a line's shape. Unknown keys are ignored, so a newer Baton's
// recordings stay readable.
type lineJSON struct {
	At      *string         `json:"at"`
	Object  *string         `json:"object"`
	Page    *string         `json:"page"`
	Channel *string         `json:"channel"`
	Event   json.RawMessage `json:"event"`
}

func parseLine(num int, text []byte) Line {
	bad := func(format string, args ...any) Line {
		return Line{Num: num, Err: &LineError{Line: num, Err: fmt.Errorf(format, args...)}}
	}
	var raw lineJSON
	if err := json.Unmarshal(text, &raw); err != nil {
		return bad("not a recorded event: %v", err)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"at", raw.At}, {"object", raw.Object}, {"page", raw.Page}, {"channel", raw.Channel}} {
		if f.v == nil || *f.v == "" {
			return bad("missing %q", f.name)
		}
	}
	at, err := time.Parse(time.RFC3339Nano, *raw.At)
	if err != nil {
		return bad("invalid \"at\" %q: want an RFC 3339 time", *raw.At)
	}
	var ch messenger.Channel
	switch *raw.Channel {
	case "messaging":
		ch = messenger.Messaging
	case "standby":
		ch = messenger.Standby
	case "changes":
		ch = messenger.Changes
	default:
		return bad("invalid \"channel\" %q: want messaging, standby or changes", *raw.Channel)
	}
	if *raw.Object != "page" && *raw.Object != "instagram" {
		return bad("invalid \"object\" %q: want page or instagram", *raw.Object)
	}
	if len(raw.Event) == 0 || raw.Event[0] != '{' {
		return bad("\"event\" must be a JSON object")
	}
	return Line{Num: num, At: at, Object: *raw.Object, Page: *raw.Page, Channel: ch, Event: raw.Event}
}
