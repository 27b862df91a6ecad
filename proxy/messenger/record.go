package messenger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
)

// The first byte of a stored event says its format. Version 1 holds the
// envelope facts that are not inside the event (channel, entry time,
// object, page); version 2 adds the entry's id and time as Meta wrote
// them (EntryRaw). Both are read; version 2 is written, and only for an
// event that has them, so a record stored by an older Baton and written
// again keeps its bytes (and its delivery id).
const (
	recordV1 = 1
	recordV2 = 2
)

// EncodeRecord turns an event into the bytes kept in the durable queue: the
// envelope facts that are not inside the event followed by the raw event.
func EncodeRecord(e *Event) []byte {
	b := make([]byte, 0, 32+len(e.Object)+len(e.PageID)+len(e.Entry.ID)+len(e.Entry.Time)+len(e.Raw))
	version := byte(recordV1)
	if e.Entry.Exact {
		version = recordV2
	}
	b = append(b, version, byte(e.Channel))
	b = binary.AppendVarint(b, e.EntryTime)
	for _, f := range [2]string{e.Object, e.PageID} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	if e.Entry.Exact {
		for _, f := range [2][]byte{e.Entry.ID, e.Entry.Time} {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
	}
	return append(b, e.Raw...)
}

// EncodeRecordDetached returns e's record and a copy of e whose bytes
// (the raw event, the entry as written) lie in that record: an event
// parsed with ParseShared then outlives the body it was parsed from
// without holding its bytes twice.
func EncodeRecordDetached(e *Event) ([]byte, Event) {
	rec := EncodeRecord(e)
	d := *e
	end := len(rec) - len(e.Raw)
	d.Raw = rec[end:]
	if e.Entry.Exact {
		timeStart := end - len(e.Entry.Time)
		idEnd := timeStart - uvarintLen(uint64(len(e.Entry.Time)))
		d.Entry.ID = rec[idEnd-len(e.Entry.ID) : idEnd]
		d.Entry.Time = rec[timeStart:end]
	}
	return rec, d
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

var errBadRecord = errors.New("corrupt queue record")

// DecodeRecord is the inverse of EncodeRecord; it re-reads the routing fields.
func DecodeRecord(b []byte) (Event, error) {
	if len(b) < 2 || (b[0] != recordV1 && b[0] != recordV2) || b[1] >= channels {
		return Event{}, errBadRecord
	}
	version, ch := b[0], Channel(b[1])
	b = b[2:]
	t, n := binary.Varint(b)
	if n <= 0 {
		return Event{}, errBadRecord
	}
	b = b[n:]
	count := 2
	if version == recordV2 {
		count = 4
	}
	var fields [4][]byte
	for i := range count {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return Event{}, errBadRecord
		}
		fields[i] = b[n : n+int(l)]
		b = b[n+int(l):]
	}
	ev, err := ParseEvent(string(fields[0]), string(fields[1]), t, ch, b)
	if err == nil && version == recordV2 {
		ev.Entry = EntryRaw{Exact: true, ID: bytes.Clone(fields[2]), Time: bytes.Clone(fields[3])}
	}
	return ev, err
}

// Envelope wraps one event in the platform's delivery shape, in the array of
// its channel, so an unchanged bot can read it as if Meta had sent it.
func Envelope(e *Event) []byte {
	return AppendEnvelope(make([]byte, 0, 64+len(e.Object)+len(e.PageID)+len(e.Raw)), e)
}

// AppendEnvelope appends e's envelope (see Envelope) to b.
func AppendEnvelope(b []byte, e *Event) []byte {
	b = append(b, `{"object":`...)
	b = appendJSONString(b, e.Object)
	b = append(b, envelopeEntry+`{"id":`...)
	switch {
	case e.Entry.Exact:
		// As Meta wrote them: the bot reads the envelope it would have.
		b = append(b, e.Entry.ID...)
		if len(e.Entry.Time) > 0 {
			b = append(b, `,"time":`...)
			b = append(b, e.Entry.Time...)
		}
	default:
		b = appendJSONString(b, e.PageID)
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, e.EntryTime, 10)
	}
	b = append(b, `,"`...)
	b = append(b, e.Channel.String()...)
	b = append(b, `":[`...)
	b = append(b, e.Raw...)
	return append(b, "]}]}"...)
}

// envelopeEntry is what joins the head of an envelope to its entry.
const envelopeEntry = `,"entry":[`

// SplitEnvelope splits a body made by AppendEnvelope into its head (up to
// and including `"entry":[`) and its one entry, so that envelopes with the
// same head can be joined into one body, as Meta batches a busy Page's
// events: head, the entries separated by commas, then "]}". ok is false
// for a body of any other shape.
func SplitEnvelope(body []byte) (head, entry []byte, ok bool) {
	const start = `{"object":"`
	if len(body) < len(start) || string(body[:len(start)]) != start {
		return nil, nil, false
	}
	i := len(start)
	for i < len(body) && body[i] != '"' {
		if body[i] == '\\' {
			return nil, nil, false // AppendEnvelope never escapes an object it batches
		}
		i++
	}
	i++ // the closing quote
	if len(body) < i+len(envelopeEntry)+len("{}]}") || string(body[i:i+len(envelopeEntry)]) != envelopeEntry ||
		string(body[len(body)-2:]) != "]}" {
		return nil, nil, false
	}
	i += len(envelopeEntry)
	return body[:i], body[i : len(body)-2], true
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // escapes needed: a Go string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
