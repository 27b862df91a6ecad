package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// While a clean stop waits for a POST to the bot, Baton still answers: a
// new webhook gets 503 (Meta will deliver it again) and readiness says
// draining, rather than connections refused for up to shutdown_timeout.
func TestCleanStopAnswers503AndDrainingWhileItWaits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "6101"
	release := make(chan struct{})
	h.bot.OnEvent(func(sandbox.Received) { <-release })
	if status := h.postSigned(envelope(textEvent(u, "m_drain_1", "hello"))); status != 200 {
		t.Fatalf("webhook: %d", status)
	}
	h.until(func() bool { return h.thread(u).Decided > 0 }, func() string { return "the event was never decided" })
	webhook, admin := h.baton.WebhookURL(), h.baton.AdminURL()
	closed := make(chan error, 1)
	go func() { closed <- h.baton.Close() }()
	released := false
	defer func() {
		if !released {
			close(release)
		}
		<-closed // the stop ends before the test's directory goes
	}()

	h.until(func() bool {
		status, body := getURL(t, admin+"/-/ready")
		return status == 503 && strings.Contains(body, "draining")
	}, func() string {
		status, body := getURL(t, admin+"/-/ready")
		return fmt.Sprintf("ready: %d %s", status, body)
	})
	body := envelope(textEvent(u, "m_drain_2", "anyone?"))
	if status, _, err := postTo(webhook, body, signed(body)); err != nil || status != 503 {
		t.Errorf("a webhook during the stop got %d (%v); want 503", status, err)
	}
	select {
	case err := <-closed:
		closed <- err
		t.Fatalf("the stop ended (%v) while a POST to the bot was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	released = true
	if err := <-closed; err != nil {
		t.Errorf("the stop: %v", err)
	}
	closed <- nil
}
