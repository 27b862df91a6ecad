package app_test

import (
	"testing"
)

// Keywords in scripts written without spaces match inside a sentence,
// end to end: a user who writes "担当者と話したい" (Japanese), "我要转人工"
// (Chinese) or "ขอคุยกับพนักงานหน่อย" (Thai) is handed to people.
func TestUnspacedKeywordsHandOverEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{policy: `version: 1
rules:
  - name: human
    when: {keywords: ["担当者", "人工", "พนักงาน"]}
    do: [{pass: {to: helpdesk}}]
`})
	for u, text := range map[string]string{"8201": "担当者と話したい", "8202": "我要转人工", "8203": "ขอคุยกับพนักงานหน่อย"} {
		h.p.UserText(page, u, text)
		h.waitKind(h.agent, u, "pass_thread_control")
		if got := h.p.Owner(page, u); got != agentApp {
			t.Errorf("%q: owner %q; want the helpdesk", text, got)
		}
	}
}
