package messenger

import (
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString checks the fast path against encoding/json, which
// the envelopes used before (its HTML escapes included).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "page", "104455667788990", `a"b`, `a\b`, "<b>&", "tab\there", "ä", "\u2028", "bad\xffutf8", "instagram"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("appendJSONString(%q) = %s; want %s", s, got[1:], want)
		}
	})
}
