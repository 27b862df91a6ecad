package policies

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMetadata(t *testing.T) {
	got := Metadata("talk-to-human", `user asked for a "human" <now>`, "m_abc123")
	want := `{"rule":"talk-to-human","reason":"user asked for a \"human\" <now>","event":"m_abc123"}`
	if got != want {
		t.Errorf("Metadata = %s\nwant       %s", got, want)
	}
}

func TestMetadataLimits(t *testing.T) {
	long := func(unit string, n int) string { return strings.Repeat(unit, n) }
	tests := []struct {
		name                string
		rule, reason, event string
		keepReason          bool
	}{
		{"short", "r", "why", "e", true},
		{"just under", "r", long("a", 1000-len(`{"rule":"r","reason":"","event":"e"}`)-1), "e", true},
		{"just over", "r", long("a", 1000-len(`{"rule":"r","reason":"","event":"e"}`)), "e", false},
		{"ascii", "talk-to-human", long("a", 5000), "m_1", false},
		{"multibyte", "talk-to-human", long("é漢🙂", 2000), "m_1", false},
		{"escapes", "talk-to-human", long("\"\\\n\x01", 2000), "m_1", false},
		{"invalid utf-8", "r", long("\xffa", 3000), "e", false},
		{"huge rule and event", long("x", 5000), long("y", 5000), long("\x02", 5000), false},
		{"empty", "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Metadata(tt.rule, tt.reason, tt.event)
			if len(got) >= 1000 {
				t.Errorf("len = %d; want < 1000", len(got))
			}
			if !utf8.ValidString(got) {
				t.Error("invalid UTF-8")
			}
			var m metadata
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatalf("invalid JSON: %v\n%s", err, got)
			}
			if tt.keepReason && m.Reason != tt.reason {
				t.Errorf("reason = %q; want it untouched", m.Reason)
			}
			if !tt.keepReason {
				if !strings.HasSuffix(m.Reason, "…") {
					t.Errorf("truncated reason %q should end with …", m.Reason)
				}
				if len(got) < 900 && len(tt.rule) < 100 {
					t.Errorf("len = %d; the reason should use the available room", len(got))
				}
			}
		})
	}
}

func FuzzMetadata(f *testing.F) {
	f.Add("talk-to-human", "user asked for a human", "m_1")
	f.Add("r", strings.Repeat("\"é\x00", 400), "e")
	f.Fuzz(func(t *testing.T, rule, reason, event string) {
		got := Metadata(rule, reason, event)
		if len(got) >= 1000 || !utf8.ValidString(got) || !json.Valid([]byte(got)) {
			t.Fatalf("bad metadata (%d bytes): %q", len(got), got)
		}
	})
}
