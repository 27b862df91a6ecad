package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies"
)

// perPageSet has a file for one page, and a file for the others with a
// rule that holds only in business hours.
func perPageSet(t *testing.T) *policies.Set {
	t.Helper()
	set, err := policies.Compile([]policies.File{
		{Name: "page-a.yaml", Data: []byte(`version: 1
pages: ["104455667788990"]
rules:
  - name: page-a-hello
    when: {keywords: [hello]}
    do: [{send_text: "page A"}]
`)},
		{Name: "default.yaml", Data: []byte(`version: 1
teams:
  support:
    timezone: Europe/Berlin
    hours: {mon: ["09:00-17:00"]}
rules:
  - name: open-hello
    when: {keywords: [hello], open: support}
    do: [{send_text: "we are open"}]
  - name: closed-hello
    when: {keywords: [hello]}
    do: [{send_text: "we are closed"}]
`)},
	}, testApps)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// One event object is judged as its page's: the page comes from its
// recipient.id, or --page; one that names no page is judged by the files
// without pages:, with a warning naming the pages it could not be judged
// for; --at judges business hours at another time than now.
func TestExplainOneEventsPageAndTime(t *testing.T) {
	set := perPageSet(t)
	monday := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC) // 11:00 in Berlin
	sunday := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	const withRecipient = `{"sender":{"id":"7001"},"recipient":{"id":"104455667788990"},"timestamp":1764763200000,"message":{"mid":"m1","text":"hello"}}`
	const noRecipient = `{"sender":{"id":"7001"},"message":{"mid":"m1","text":"hello"}}`
	for _, c := range []struct {
		name, event string
		o           ExplainOptions
		want        []string
		warn        string
	}{
		{"the recipient's page", withRecipient, ExplainOptions{At: monday}, []string{"event: page 104455667788990", `rule "page-a-hello"`}, ""},
		{"--page", withRecipient, ExplainOptions{Page: "555", At: monday}, []string{"event: page 555", `rule "open-hello"`}, ""},
		{"no page", noRecipient, ExplainOptions{At: monday}, []string{"event: page 0", `rule "open-hello"`}, "not by those of pages 104455667788990"},
		{"--at a closed time", noRecipient, ExplainOptions{Page: "555", At: sunday}, []string{`rule "closed-hello"`}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			c.o.AppID, c.o.Apps = botApp, testApps
			if code := Explain(&out, &errOut, set, []byte(c.event), c.o); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if (c.warn == "") != (errOut.Len() == 0) || !strings.Contains(errOut.String(), c.warn) {
				t.Errorf("stderr %q; want %q", errOut.String(), c.warn)
			}
		})
	}
}
