package app_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/demo"
)

// thirdPage has a policy file of its own in the test below.
const thirdPage = "300000000000003"

// Three pages on one webhook, one of them with a policy file of its own
// and one whose token the Graph API rejects (190): the page with its own
// file hands over by its own rule, the first page by the shared file,
// and the rejected page only waits: it shows as unhealthy in the metrics
// and in readiness, its events still reach the bot, and the others are
// not held up.
func TestThreePagesPerPageFilesAndARejectedToken(t *testing.T) {
	t.Parallel()
	h, faults := pagesHarness(t, []string{page, rejectedPage, thirdPage}, []policyFile{
		{"third.yaml", fmt.Sprintf(`version: 1
pages: [%q]
rules:
  - name: third-page-human
    when: {keywords: [agent]}
    do:
      - send_text: "The third page's team will answer."
      - pass: {to: helpdesk}
`, thirdPage)},
		{"policy.yaml", demo.Policy},
	}, nil)
	faults.RejectToken(rejectedPage, 0)
	const uA, uB, uC = "9001", "9002", "9003"

	h.p.UserText(rejectedPage, uB, "agent please")
	h.waitMetric(fmt.Sprintf(`baton_graph_page_healthy{page=%q} 0`, rejectedPage))

	h.p.UserText(page, uA, "agent please")
	h.p.UserText(thirdPage, uC, "agent please")
	h.waitKind(h.agent, uA, "pass_thread_control")
	h.waitKind(h.agent, uC, "pass_thread_control")
	if got := h.p.Owner(page, uA); got != agentApp {
		t.Errorf("first page: owner %q; want the helpdesk", got)
	}
	if got := h.p.Owner(thirdPage, uC); got != agentApp {
		t.Errorf("third page: owner %q; want the helpdesk", got)
	}
	var said []string
	for _, l := range h.p.Transcript(thirdPage, uC) {
		if l.Kind == "send" && l.From == botApp {
			said = append(said, l.Text)
		}
	}
	if len(said) != 1 || said[0] != "The third page's team will answer." {
		t.Errorf("third page: Baton said %q; want its own file's text", said)
	}
	// The platform sees the pass before Baton commits its record of it.
	h.until(func() bool { return strings.Contains(strings.Join(h.history(uA), " "), "talk-to-human") },
		func() string {
			return fmt.Sprintf("first page: history %q; want the shared file's rule", h.history(uA))
		})

	// The rejected page waits, and says so; its events reach the bot.
	if n := h.countOn(rejectedPage, uB, "pass"); n != 0 {
		t.Errorf("the rejected page passed %d times", n)
	}
	h.p.UserText(rejectedPage, "9004", "just chatting")
	h.waitText(h.bot, "9004", "just chatting")
	status, body := getURL(t, h.baton.AdminURL()+"/-/ready")
	if status != 503 || !strings.Contains(body, "page:"+rejectedPage) || strings.Contains(body, `"page:`+page+`","ok":false`) {
		t.Errorf("readiness %d %s; want 503 naming page:%s only", status, body, rejectedPage)
	}
	exposition := h.metrics()
	for _, pg := range []string{page, thirdPage} {
		if line := fmt.Sprintf(`baton_graph_page_healthy{page=%q} 1`, pg); !strings.Contains(exposition, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
}
