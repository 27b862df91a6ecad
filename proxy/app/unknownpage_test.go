package app_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/batonproxy/baton/state"
)

// A webhook for a page that is not in pages: is accepted and its events
// reach the bot (the bot may serve pages Baton has no token for); the
// rules' actions on its threads are refused without a Graph call,
// recorded in the thread's history and counted.
func TestUnknownPageEventsReachTheBotAndItsActionsAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const other, u = "998877665544332", "5501"
	body := []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":%q,"time":1767225600123,"messaging":[`+
		`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":1767225600000,"message":{"mid":"m_unknown_1","text":"agent please"}}]}]}`, other, u, other))
	if status := h.postSigned(body); status != 200 {
		t.Fatalf("webhook for an unknown page: %d; want 200", status)
	}
	h.until(func() bool { return strings.Contains(h.metrics(), "baton_unknown_page_actions_total 1\n") },
		func() string { return "the refused action was never counted" })
	h.until(func() bool {
		for _, ev := range h.bot.Events() {
			if ev.Page == other && ev.User == u && ev.Text == "agent please" {
				return true
			}
		}
		return false
	}, func() string { return "the unknown page's event never reached the bot" })
	// Counted when refused; recorded when the decision commits, just after.
	var hist []state.Change
	h.until(func() bool {
		var err error
		if hist, err = h.baton.Store().History(t.Context(), state.ThreadKey{Page: other, User: u}); err != nil {
			t.Fatal(err)
		}
		for _, c := range hist {
			if c.Kind == "action_failed" && strings.Contains(c.Reason.Note, "not in pages:") {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("history %+v; want the refused pass recorded", hist) })
	if n := h.logs.FilterMessageSnippet("not in pages:").Len(); n != 1 {
		t.Errorf("%d log lines about the unknown page; want one", n)
	}
}
