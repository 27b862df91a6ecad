package policies

import (
	"bytes"
	"encoding/json"
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
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	Event  string `json:"event"`
}

// Metadata renders the handover metadata sent with a thread-control call,
// so the receiving app (and anyone reading the thread's history) can see
// why Baton moved the conversation: {"rule":..,"reason":..,"event":..}.
//
// The result is always valid JSON, valid UTF-8 and under 1000 bytes: the
// reason is truncated first (on a character boundary, marked with "…"),
// then, only if needed, the rule and event id.
func Metadata(rule, reason, eventID string) string {
	m := metadata{
		Rule:   fit(rule, maxMetaRule),
		Reason: reason,
		Event:  fit(eventID, maxMetaEvent),
	}
	if out := encode(m); len(out) < maxMetadata {
		return out
	}
	m.Reason = ""
	room := maxMetadata - 1 - len(encode(m)) // bytes left for the reason's encoding
	m.Reason = fit(reason, room)
	return encode(m)
}

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
