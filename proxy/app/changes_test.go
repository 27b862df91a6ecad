package app_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// Page feed changes reach the bot as Meta sent them, byte for byte, in
// order, whoever owns the users' threads.
func TestPageChangesReachTheBotAsSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	var sent [][]byte
	for i := range 3 {
		body, err := h.p.PageChange(page, "feed", map[string]any{
			"item": "comment", "verb": "add", "comment_id": fmt.Sprintf("1_%d", i), "message": fmt.Sprintf("comment <%d>", i),
			"from": map[string]string{"id": "7001", "name": "Sam"},
		})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, body)
	}
	changes := func() []sandbox.Received {
		var out []sandbox.Received
		for _, ev := range h.bot.Events() {
			if ev.Kind == sandbox.RecvChange {
				out = append(out, ev)
			}
		}
		return out
	}
	h.until(func() bool { return len(changes()) >= 3 }, func() string { return fmt.Sprintf("the bot got %d changes", len(changes())) })
	got := changes()
	if len(got) != 3 {
		t.Fatalf("the bot got %d changes; want 3, each once", len(got))
	}
	for i, ev := range got {
		if ev.Page != page || ev.Text != "feed" || ev.Channel != "changes" {
			t.Errorf("change %d: %+v", i, ev)
		}
		if !bytes.Equal(ev.Body, sent[i]) {
			t.Errorf("change %d reached the bot as\n%s\nMeta sent\n%s", i, ev.Body, sent[i])
		}
	}
}

// The envelope the bot gets is the one Meta sent: a numeric entry id stays
// a number, a string time a string, and escapes stay as written.
func TestTheBotGetsTheEnvelopeAsSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "5601"
	body := []byte(`{"object":"page","entry":[{"id":` + page + `,"time":"1767225600123","messaging":[` +
		`{"sender":{"id":"` + u + `"},"recipient":{"id":"` + page + `"},"timestamp":1767225600000,"message":{"mid":"m_as_sent","text":"a <b> & \u00e9"}}]}]}`)
	if status := h.postSigned(body); status != 200 {
		t.Fatalf("webhook: %d", status)
	}
	got := h.waitKind(h.bot, u, "text")
	if !bytes.Equal(got.Body, body) {
		t.Errorf("the bot got\n%s\nMeta sent\n%s", got.Body, body)
	}
}

// A change Meta delivers again is recognised as a re-delivery: the bot
// gets it once.
func TestARedeliveredChangeReachesTheBotOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	body := []byte(`{"object":"page","entry":[{"id":"` + page + `","time":1764760000,"changes":[{"field":"feed","value":{"item":"comment","verb":"add","comment_id":"9_9","message":"twice?"}}]}]}`)
	for range 2 {
		if status := h.postSigned(body); status != 200 {
			t.Fatalf("webhook: %d", status)
		}
	}
	h.until(func() bool { return strings.Contains(h.metrics(), `baton_webhook_events_total{result="duplicate"} 1`) },
		func() string { return "the second delivery was not counted as a duplicate" })
	n := 0
	h.until(func() bool {
		n = 0
		for _, ev := range h.bot.Events() {
			if ev.Kind == sandbox.RecvChange {
				n++
			}
		}
		return n >= 1
	}, func() string { return "the change never reached the bot" })
	if n != 1 {
		t.Errorf("the bot got the change %d times; want once", n)
	}
}
