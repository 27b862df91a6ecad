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

func TestMetadataWith(t *testing.T) {
	got := MetadataWith("handoff", "asked", "m_1", []string{"hi", "I need <help>"})
	want := `{"rule":"handoff","reason":"asked","event":"m_1","last":["hi","I need <help>"]}`
	if got != want {
		t.Errorf("MetadataWith = %s\nwant           %s", got, want)
	}
	if got := MetadataWith("r", "why", "e", nil); got != Metadata("r", "why", "e") {
		t.Errorf("without messages = %s; want Metadata's output", got)
	}
	if got := MetadataWith("r", "why", "e", []string{}); strings.Contains(got, "last") {
		t.Errorf("empty messages = %s; want no last", got)
	}
}

func TestMetadataWithLimits(t *testing.T) {
	long := strings.Repeat
	tests := []struct {
		name       string
		reason     string
		last       []string
		keepReason bool
		keepNewest bool // the newest message survives whole
	}{
		{"fits", "why", []string{"a", "b"}, true, true},
		{"oldest dropped first", "why", []string{long("old ", 200), long("mid ", 50), "newest"}, true, true},
		{"ten long messages", "why", []string{long("a", 500), long("b", 500), long("c", 500), long("d", 500), long("e", 500), long("f", 500), long("g", 500), long("h", 500), long("i", 500), "last one"}, true, true},
		{"newest alone is too long", "why", []string{"older", long("é漢🙂\"", 800)}, true, false},
		{"reason after messages", long("r", 2000), []string{"hello", "world"}, false, false},
		{"escapes and invalid utf-8", "why", []string{long("\"\\\n\x01", 300), long("\xffa", 300)}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MetadataWith("talk-to-human", tt.reason, "m_abc", tt.last)
			if len(got) >= 1000 || !utf8.ValidString(got) {
				t.Fatalf("len %d, valid UTF-8 %t", len(got), utf8.ValidString(got))
			}
			var m metadata
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatalf("invalid JSON: %v\n%s", err, got)
			}
			if tt.keepReason != (m.Reason == tt.reason) {
				t.Errorf("reason kept = %t; want %t", m.Reason == tt.reason, tt.keepReason)
			}
			if tt.keepNewest && (len(m.Last) == 0 || m.Last[len(m.Last)-1] != tt.last[len(tt.last)-1]) {
				t.Errorf("last = %q; want the newest message whole", m.Last)
			}
			if !tt.keepReason && len(m.Last) > 0 {
				t.Errorf("the reason was shortened but messages kept: %q", m.Last)
			}
			if tt.keepReason && len(got) < 900 && len(strings.Join(tt.last, "")) > 1000 {
				t.Errorf("len = %d; the messages should use the room", len(got))
			}
			// Messages kept are the newest, in order: a suffix of the input
			// (the oldest of them possibly shortened).
			for i, msg := range m.Last {
				orig := strings.ToValidUTF8(tt.last[len(tt.last)-len(m.Last)+i], "\uFFFD")
				if msg != orig && !(i == 0 && strings.HasSuffix(msg, "…") && strings.HasPrefix(orig, strings.TrimSuffix(msg, "…"))) {
					t.Errorf("last[%d] = %q is not message %q", i, msg, orig)
				}
			}
		})
	}
}

func FuzzMetadataWith(f *testing.F) {
	f.Add("r", "why", "e", "hello", strings.Repeat("é\"", 400), uint8(3))
	f.Fuzz(func(t *testing.T, rule, reason, event, a, b string, n uint8) {
		var last []string
		for i := range int(n % 11) {
			if i%2 == 0 {
				last = append(last, a)
			} else {
				last = append(last, b)
			}
		}
		got := MetadataWith(rule, reason, event, last)
		if len(got) >= 1000 || !utf8.ValidString(got) || !json.Valid([]byte(got)) {
			t.Fatalf("bad metadata (%d bytes): %q", len(got), got)
		}
	})
}
