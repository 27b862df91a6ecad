package app_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// A conversation handed to an agent who answers two minutes later and
// hands back after five shows in the operations metrics: the first reply
// and the time with people as one observation each, the Graph calls by
// endpoint and result, and the bot's delivery attempts and latency.
func TestOperationsMetricsFollowAConversation(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, "")
	const u = "8101"
	h.toBot(u, "hello")
	h.handOver(u)
	// The clock moves once Baton has recorded the handover, so the two
	// minutes count from it.
	h.until(func() bool { return h.thread(u).Owner.Kind == state.OwnerApp },
		func() string { return fmt.Sprintf("Baton's owner after the pass: %v", h.thread(u).Owner) })
	h.advance(2 * time.Minute)
	if _, err := h.p.Send(agentApp, page, u, "Hi, Sam here."); err != nil {
		t.Fatal(err)
	}
	h.until(func() bool { return !h.thread(u).LastOther.IsZero() }, func() string { return "the agent's answer was never decided" })
	h.advance(3 * time.Minute)
	h.p.UserText(page, u, "back to bot")
	h.until(func() bool { return strings.Contains(h.metrics(), `baton_bot_delivery_attempts_total{outcome="ok"}`) },
		func() string { return "no delivery to the bot counted" })
	h.waitKind(h.agent, u, "take_thread_control")
	h.until(func() bool { return strings.Contains(h.metrics(), "baton_with_people_seconds_count 1\n") },
		func() string {
			return "time with people never observed:\n" + grepMetrics(h.metrics(), "baton_with_people")
		})

	m := h.metrics()
	if got := metricValue(t, m, "baton_first_agent_reply_seconds_count"); got != 1 {
		t.Errorf("first agent reply observed %v times; want 1", got)
	}
	if sum := metricValue(t, m, "baton_first_agent_reply_seconds_sum"); sum < 110 || sum > 130 {
		t.Errorf("first agent reply took %vs; want about 120s", sum)
	}
	if sum := metricValue(t, m, "baton_with_people_seconds_sum"); sum < 290 || sum > 310 {
		t.Errorf("time with people %vs; want about 300s", sum)
	}
	for _, want := range []string{
		`baton_graph_calls_total{code="ok",endpoint="pass_thread_control"} 1`,
		`baton_graph_calls_total{code="ok",endpoint="take_thread_control"} 1`,
		`baton_graph_call_seconds_count{endpoint="pass_thread_control"} 1`,
		`baton_oldest_queued_seconds 0`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, grepMetrics(m, strings.SplitN(want, "{", 2)[0]))
		}
	}
	if n := metricValue(t, m, `baton_bot_delivery_attempts_total{outcome="ok"}`); n < 1 {
		t.Errorf("%v delivery attempts counted as ok; want the user's message", n)
	}
	if n := metricValue(t, m, "baton_bot_delivery_seconds_count"); n < 1 {
		t.Errorf("%v delivery latencies observed", n)
	}
}

// metricValue reads one sample from a Prometheus exposition.
func metricValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("no sample %s in:\n%s", name, grepMetrics(exposition, strings.SplitN(name, "{", 2)[0]))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// grepMetrics is the exposition's lines that mention name.
func grepMetrics(exposition, name string) string {
	var out []string
	for _, l := range strings.Split(exposition, "\n") {
		if strings.Contains(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
