package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

func TestDemoPrintsTheConversationWithOwners(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), &out, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	transcript := out.String()
	// Each step in order, with the owner after it.
	want := []struct{ who, what, owner string }{
		{"user", "hi", "bot"},
		{"bot", "echo: hi", "bot"},
		{"user", "Can I talk to a human please?", "bot"},
		{"bot", "Connecting you with a teammate now.", "bot"},
		{"bot", "passes the thread", "helpdesk"},
		{"user", "My order #1234 has not arrived.", "helpdesk"},
		{"helpdesk", "Hi, I'm Sam from support.", "helpdesk"},
		{"helpdesk", "passes the thread (resolved)", "bot"},
		{"user", "thanks!", "bot"},
		{"bot", "echo: thanks!", "bot"},
	}
	lines := strings.Split(transcript, "\n")
	i := 0
	for _, line := range lines {
		if i < len(want) {
			w := want[i]
			f := strings.Fields(line)
			if len(f) > 2 && f[1] == w.who && strings.Contains(line, w.what) && strings.HasSuffix(line, " "+w.owner) {
				i++
			}
		}
	}
	if i < len(want) {
		t.Fatalf("transcript is missing step %d %+v (or has it out of order):\n%s", i, want[i], transcript)
	}
	if strings.Contains(transcript, "echo: Can I talk") || strings.Contains(transcript, "echo: My order") {
		t.Errorf("the bot answered a message that was meant for people:\n%s", transcript)
	}
}
