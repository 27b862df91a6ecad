package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batonproxy/baton/proxy/buildinfo"
)

// Operations is what ops alert on besides faults: how the Graph API and
// the bot answer and how fast, how long people wait for an agent and stay
// with one, and how often the platform corrected Baton's idea of a
// thread's owner. No label takes its value from user input: endpoints are
// Baton's own calls, codes are the Graph API's numbers, pages come from
// the configuration and usage kinds from a fixed set.
type Operations struct {
	GraphCalls       *prometheus.CounterVec   // endpoint, code: ok | transport | http | the Graph error code
	GraphLatency     *prometheus.HistogramVec // endpoint
	GraphUsage       *prometheus.GaugeVec     // page, kind: app | page | business_use_case
	GraphUsageWaits  *prometheus.CounterVec   // page
	BotAttempts      *prometheus.CounterVec   // outcome: ok | rejected | failed
	BotLatency       prometheus.Histogram
	FirstAgentReply  prometheus.Histogram
	WithPeople       prometheus.Histogram
	OwnershipRepairs prometheus.Counter
	// UnknownPageRefusals counts rule actions refused because their page
	// is not in the config's pages: (no access token).
	UnknownPageRefusals prometheus.Counter
	// BotAttempts' children, looked up once: one is counted per POST.
	BotAttemptOK, BotAttemptRejected, BotAttemptFailed prometheus.Counter
	oldestQueuedReady                                  bool
}

// LatencyBuckets are the Graph API's and the bot's answer times: from a
// bot on the same host to a call that times out.
var LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// PeopleBuckets are the times people wait for an agent's first reply and
// stay with people: seconds to a day.
var PeopleBuckets = []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400}

func newOperations(reg *prometheus.Registry) Operations {
	o := Operations{
		GraphCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_graph_calls_total", Help: "Graph API requests sent, by endpoint and result: ok, transport (no answer), http (an error status without a Graph error), or the Graph error code.",
		}, []string{"endpoint", "code"}),
		GraphLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "baton_graph_call_seconds", Help: "Time from sending a Graph API request to its answer (or the transport error), by endpoint.",
			Buckets: LatencyBuckets,
		}, []string{"endpoint"}),
		GraphUsage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baton_graph_usage_percent", Help: "Usage the Graph API last reported for the page's token, in percent of its limit (the highest of call_count, total_time, total_cputime), by page and header: app (X-App-Usage), page (X-Page-Usage), business_use_case (X-Business-Use-Case-Usage).",
		}, []string{"page", "kind"}),
		GraphUsageWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_graph_usage_waits_total", Help: "Graph API calls held back to space out the page token's calls because its reported usage passed the threshold, by page.",
		}, []string{"page"}),
		BotAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_bot_delivery_attempts_total", Help: "POSTs to the bot, by outcome: ok, rejected (a 4xx other than 408/429), failed (down, 5xx, timeout: retried).",
		}, []string{"outcome"}),
		BotLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baton_bot_delivery_seconds", Help: "Time from POSTing to the bot to its answer (or the failure), per attempt.",
			Buckets: LatencyBuckets,
		}),
		FirstAgentReply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baton_first_agent_reply_seconds", Help: "Time from a thread going to another app to that app's first message in it.",
			Buckets: PeopleBuckets,
		}),
		WithPeople: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baton_with_people_seconds", Help: "Time a thread stayed with another app, measured when it leaves it.",
			Buckets: PeopleBuckets,
		}),
		UnknownPageRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baton_unknown_page_actions_total", Help: "Rule actions refused because their page is not in the config's pages: (its events still go to the bot).",
		}),
		OwnershipRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baton_ownership_repairs_total", Help: "Threads whose owner Baton corrected from the platform's answer (thread_owner, or a refused handover naming the owner).",
		}),
	}
	o.BotAttemptOK = o.BotAttempts.WithLabelValues("ok")
	o.BotAttemptRejected = o.BotAttempts.WithLabelValues("rejected")
	o.BotAttemptFailed = o.BotAttempts.WithLabelValues("failed")
	info := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baton_build_info", Help: "Always 1; its labels say which build of Baton runs (as GET /api/v1/build on the admin listener).",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit, "go": info.Go},
	})
	build.Set(1)
	reg.MustRegister(build)
	reg.MustRegister(o.GraphCalls, o.GraphLatency, o.GraphUsage, o.GraphUsageWaits, o.BotAttempts, o.BotLatency, o.FirstAgentReply, o.WithPeople, o.OwnershipRepairs, o.UnknownPageRefusals)
	return o
}

// GraphCall records one Graph API request: code is 0 for an answer
// without error, -1 without an answer, -2 for an error status without a
// Graph error object.
func (m *Metrics) GraphCall(endpoint string, code int, took time.Duration) {
	var c string
	switch {
	case code == 0:
		c = "ok"
	case code == -1:
		c = "transport"
	case code < 0 || code > 999999:
		c = "http"
	default:
		c = strconv.Itoa(code)
	}
	m.GraphCalls.WithLabelValues(endpoint, c).Inc()
	m.GraphLatency.WithLabelValues(endpoint).Observe(took.Seconds())
}

// RegisterOldestQueued adds the age of the oldest event waiting in a
// thread queue, from age (seconds; 0 when nothing waits). Registered once.
func (m *Metrics) RegisterOldestQueued(age func() float64) {
	if m.oldestQueuedReady {
		return
	}
	m.oldestQueuedReady = true
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "baton_oldest_queued_seconds", Help: "Age of the oldest accepted event Baton holds undelivered in memory (decided or not), in seconds; 0 when none.",
	}, age))
}
