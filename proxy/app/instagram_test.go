package app_test

import (
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/state"
)

// igAccount is the Instagram account linked to the test page.
const igAccount = "17841400000000001"

// An Instagram account linked to the page, beside the page's Messenger
// conversations on the same webhook: a keyword hands the Instagram
// conversation to people through the page's edges, the agent answers,
// "back to bot" hands it back; the bot gets the account's events as
// Instagram events, and the Messenger conversation is unaffected.
func TestInstagramHandoffAgentReplyAndHandback(t *testing.T) {
	t.Parallel()
	h, _ := pagesHarness(t, []string{page}, []policyFile{{"policy.yaml", demo.Policy}}, map[string]string{page: igAccount})
	const uIG, uFB = "6612345678901234", "7712345678901234"

	h.p.UserText(igAccount, uIG, "hello from instagram")
	h.p.UserText(page, uFB, "hello from messenger")
	h.waitText(h.bot, uIG, "hello from instagram")
	h.waitText(h.bot, uFB, "hello from messenger")
	for _, ev := range h.bot.Events() {
		want := map[string]string{uIG: "instagram", uFB: "page"}[ev.User]
		wantPage := map[string]string{uIG: igAccount, uFB: page}[ev.User]
		if ev.Object != want || ev.Page != wantPage || !strings.Contains(string(ev.Body), `"object":"`+want+`"`) {
			t.Errorf("the bot got %q as object %q on %s; want %s on %s", ev.Text, ev.Object, ev.Page, want, wantPage)
		}
	}

	h.p.UserText(igAccount, uIG, "agent please")
	h.waitKind(h.agent, uIG, "pass_thread_control")
	if got := h.p.Owner(igAccount, uIG); got != agentApp {
		t.Fatalf("Instagram conversation owner %q; want the helpdesk", got)
	}
	if got := h.p.Owner(page, uFB); got != botApp {
		t.Errorf("the Messenger conversation moved too: owner %q", got)
	}
	h.until(func() bool { return h.threadOn(igAccount, uIG).Owner.Kind == state.OwnerApp },
		func() string { return "Baton never recorded the Instagram handover" })

	if _, err := h.p.Send(agentApp, igAccount, uIG, "Hi, Sam from the team here."); err != nil {
		t.Fatal(err)
	}
	h.until(func() bool { return !h.threadOn(igAccount, uIG).LastOther.IsZero() },
		func() string { return "the agent's answer never reached Baton" })

	h.p.UserText(igAccount, uIG, "back to bot")
	h.until(func() bool { return h.p.Owner(igAccount, uIG) == botApp },
		func() string { return "the Instagram conversation was never handed back" })
	h.until(func() bool { return h.threadOn(igAccount, uIG).Owner.Kind == state.OwnerBot },
		func() string { return "Baton never recorded the hand-back" })

	// Every call on the Instagram conversation went to the page's edges.
	for _, c := range h.p.Calls() {
		if c.Page != page {
			t.Errorf("a Graph call went to %s/%s; want the page's edges", c.Page, c.Endpoint)
		}
	}
	var said []string
	for _, l := range h.p.Transcript(igAccount, uIG) {
		if l.From == botApp {
			said = append(said, l.Kind+":"+l.Text)
		}
	}
	if len(said) < 3 || said[0] != sandbox.KindSend+":Connecting you with a teammate now." {
		t.Errorf("Baton's lines on Instagram %q; want the holding text, the pass and the take", said)
	}
}

// threadOn is Baton's state of a thread of another account than page.
func (h *harness) threadOn(account, user string) state.Thread {
	h.t.Helper()
	th, err := h.baton.Store().Thread(h.t.Context(), state.ThreadKey{Page: account, User: user})
	if err != nil {
		h.t.Fatal(err)
	}
	return th
}
