package policies

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxMetadata is the Graph API's limit on the metadata string of
// pass_thread_control / take_thread_control / release_thread_control: it
// must be under 1000 characters. Counting bytes is stricter than counting
// characters, so staying under it in bytes is always safe.
const maxMetadata = 1000

// Budgets, in encoded bytes, for the fields that are not the reason. Rule
// names are at most 64 characters and Messenger event ids are short, so
// these only bite on hostile input; the reason gets whatever is left.
const (
	maxMetaRule  = 200
	maxMetaEvent = 300
)

type metadata struct {
	Rule   string   `json:"rule"`
	Reason string   `json:"reason"`
	Event  string   `json:"event"`
	Last   []string `json:"last,omitempty"`
}

// Metadata renders the handover metadata sent with a thread-control call,
// so the receiving app (and anyone reading the thread's history) can see
// why Baton moved the conversation: {"rule":..,"reason":..,"event":..}.
// It is MetadataWith without messages.
func Metadata(rule, reason, eventID string) string {
	return MetadataWith(rule, reason, eventID, nil)
}

// MetadataWith is Metadata plus the user's last messages, oldest first,
// so the agent who receives the thread sees what it was about:
// {"rule":..,"reason":..,"event":..,"last":[..]}.
//
// The result is always valid JSON, valid UTF-8 and under 1000 bytes. What
// does not fit is given up in order of importance: the oldest messages
// first (the one at the edge is shortened, marked with "…", the older
// ones dropped), then the reason is truncated, then, only on hostile
// input, the rule and event id. "last" is left out when no message fits.
func MetadataWith(rule, reason, eventID string, last []string) string {
	m := metadata{
		Rule:   fit(rule, maxMetaRule),
		Reason: reason,
		Event:  fit(eventID, maxMetaEvent),
	}
	if len(last) > 0 {
		m.Last = make([]string, len(last))
		for i, msg := range last {
			m.Last[i] = strings.ToValidUTF8(msg, "\uFFFD")
		}
		if out := encode(m); len(out) < maxMetadata {
			return out
		}
		m.Last = nil
	}
	base := encode(m)
	if len(base) >= maxMetadata {
		// Even without messages it does not fit: shorten the reason.
		m.Reason = ""
		room := maxMetadata - 1 - len(encode(m)) // bytes left for the reason's encoding
		m.Reason = fit(reason, room)
		return encode(m)
	}
	// ,"last":[] costs 10 bytes; each message its encoding, two quotes and
	// a comma between messages. Fill from the newest back.
	room := maxMetadata - 1 - len(base) - len(`,"last":[]`)
	var keep []string
	for i := len(last) - 1; i >= 0 && room > 2; i-- {
		msg := strings.ToValidUTF8(last[i], "\uFFFD")
		cost := 2
		if len(keep) > 0 {
			cost++ // the comma
		}
		if n := encodedLen(msg) + cost; n <= room {
			keep = append(keep, msg)
			room -= n
			continue
		}
		// The message at the edge gets what is left, if that is enough to
		// be worth reading; older ones are dropped.
		if short := fit(msg, room-cost); room-cost >= minMetaMessage && short != "" {
			keep = append(keep, short)
		}
		break
	}
	slices.Reverse(keep)
	m.Last = keep
	return encode(m)
}

// minMetaMessage is the least room, in encoded bytes, worth giving a
// shortened message; below it the message is dropped instead.
const minMetaMessage = 16

// fit returns s, or its longest prefix plus "…" whose JSON string encoding
// (without quotes) takes at most max bytes. Invalid UTF-8 is replaced
// first, so the prefix always ends on a character boundary.
func fit(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if encodedLen(s) <= max {
		return s
	}
	const ellipsis = "…"
	max -= len(ellipsis)
	if max <= 0 {
		return ""
	}
	// Binary search for the longest prefix that fits; encoded length only
	// grows with the prefix, and a prefix longer than max bytes never fits.
	lo, hi := 0, min(len(s), max)
	for lo < hi {
		mid := runeStart(s, (lo+hi+1)/2)
		if mid <= lo {
			// No rune boundary in (lo, mid]; try the next boundary up.
			_, size := utf8.DecodeRuneInString(s[lo:])
			mid = lo + size
			if mid > hi {
				break
			}
		}
		if encodedLen(s[:mid]) <= max {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	s = s[:runeStart(s, lo)]
	return s + ellipsis
}

// runeStart moves i back to the start of the rune it falls in.
func runeStart(s string, i int) int {
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

func encodedLen(s string) int {
	return len(encodeString(s)) - 2
}

func encodeString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Metadata is not HTML; escaping <, > and & would only eat the budget.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

func encode(m metadata) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m) // plain strings always encode
	return strings.TrimSuffix(b.String(), "\n")
}
