// Package metrics holds Baton's Prometheus collectors and serves them.
//
// Collectors are registered on a registry the caller passes in, so every
// test and every in-process Baton gets its own and nothing is global.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Metrics are the counters and gauges the pipeline updates.
type Metrics struct {
	Registry *prometheus.Registry

	WebhookEvents   *prometheus.CounterVec // result: accepted | duplicate
	WebhookRefused  *prometheus.CounterVec // reason: signature | malformed | too_large | bad_request | read_timeout | incomplete | full | store | stopping
	Decisions       *prometheus.CounterVec // rule, mode: enforce | observe
	Handovers       *prometheus.CounterVec // to: bot | app | idle
	ActionFailures  *prometheus.CounterVec // action
	BotDeliveries   *prometheus.CounterVec // result: ok | rejected
	BotDeadLetters  *prometheus.CounterVec // reason: rejected | budget | unreadable
	SendsSkipped    *prometheus.CounterVec // action: messages not sent because the window had closed
	Feedback        *prometheus.CounterVec // type, score: customer feedback answers
	ReloadSuccess   prometheus.Gauge
	ReloadTimestamp prometheus.Gauge
	ActiveThreads   prometheus.GaugeFunc
	StoreSync       prometheus.Histogram // seconds per group-commit sync
	// BotWaiting is how many threads have decided events waiting for the
	// bot (delivering or parked with a backoff); StaleItems counts queue
	// items announced at or below a thread's decision cursor, which the
	// dispatcher drops (an invariant breach: every append is announced once).
	BotWaiting prometheus.GaugeFunc
	StaleItems prometheus.Counter
	// GraphWaits counts the times a thread was parked because the Graph
	// API refused a rule's call for a reason that passes (rate limit,
	// rejected page token).
	GraphWaits prometheus.Counter
	// BotCircuitOpen is 1 while the bot's circuit is open (every delivery
	// failed for a while; see dispatch's circuit), else 0.
	BotCircuitOpen prometheus.Gauge
	// OperatorActions counts the take, pass and release operations ops
	// asked for through the admin API, by action, once each has run.
	OperatorActions *prometheus.CounterVec
	// By page: the Graph API's rate-limit answers, the calls that waited
	// out their token's shared backoff, the calls refused at once because
	// the page's access token was rejected, and whether the token is
	// accepted (1) or was rejected (0).
	GraphRateLimited    *prometheus.CounterVec
	GraphRateLimitWaits *prometheus.CounterVec
	GraphPageRefused    *prometheus.CounterVec
	GraphPageHealthy    *prometheus.GaugeVec

	// The store's limits and size: events queued in all threads, enqueues
	// refused at a limit (by limit, as configured), free space on the data
	// directory's file system, and the disk the store's files take, by
	// kind (tables, value logs, write-ahead logs).
	StoreQueued    prometheus.Gauge
	StoreRefused   *prometheus.CounterVec // limit: queued_per_thread | queued_total | min_free_disk_bytes
	StoreDiskFree  prometheus.Gauge
	StoreDiskBytes *prometheus.GaugeVec // kind: tables | value_log | wal

	// The children counted once or more per event, looked up once here:
	// WithLabelValues hashes its labels on every call.
	EventsAccepted, EventsDuplicate prometheus.Counter
	BotDelivered, BotRejected       prometheus.Counter

	Operations // ops.go
}

// StoreStats are the store's group-commit counters.
type StoreStats func() (commits, syncs, jobs, events uint64)

// RegisterStore adds counters for the store's group commits.
func (m *Metrics) RegisterStore(stats StoreStats) {
	counter := func(name, help string, pick func(c, s, j, e uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			return float64(pick(stats()))
		})
	}
	m.Registry.MustRegister(
		counter("baton_store_commits_total", "Group commits.", func(c, _, _, _ uint64) uint64 { return c }),
		counter("baton_store_syncs_total", "Group commits synced to disk because a webhook or worker waited for them.", func(_, s, _, _ uint64) uint64 { return s }),
		counter("baton_store_commit_jobs_total", "Enqueues, completions and timer firings committed.", func(_, _, j, _ uint64) uint64 { return j }),
		counter("baton_store_commit_events_total", "Webhook events offered to group commits (duplicates included).", func(_, _, _, e uint64) uint64 { return e }),
	)
}

// SyncBuckets are baton_store_sync_seconds' buckets: from a flush that the
// host acknowledges without reaching a disk to a slow network volume.
var SyncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// New registers Baton's collectors (and the Go runtime's) on a new
// registry. activeThreads reports how many threads have a running worker.
func New(activeThreads func() float64) *Metrics {
	return NewWith(activeThreads, func() float64 { return 0 })
}

// NewWith is New with a report of the threads waiting for the bot.
func NewWith(activeThreads, botWaiting func() float64) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		WebhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_webhook_events_total", Help: "Webhook events accepted into a thread queue, or dropped as re-deliveries.",
		}, []string{"result"}),
		WebhookRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_webhook_refused_total", Help: "Webhook POSTs refused, by reason.",
		}, []string{"reason"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_policy_decisions_total", Help: "Events a policy rule matched, by rule and mode (enforce, or observe in shadow mode).",
		}, []string{"rule", "mode"}),
		Handovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_handovers_total", Help: "Changes of thread owner Baton recorded, by new owner kind.",
		}, []string{"to"}),
		ActionFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_action_failures_total", Help: "Policy actions that failed, by action.",
		}, []string{"action"}),
		BotDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_bot_deliveries_total", Help: "Events delivered to the bot, or set aside after the bot rejected them.",
		}, []string{"result"}),
		SendsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_sends_skipped_total", Help: "Messages a rule or timeout did not send because the messaging window had closed.",
		}, []string{"action"}),
		Feedback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_feedback_total", Help: "Customer feedback answers received, by question type and score.",
		}, []string{"type", "score"}),
		ReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baton_policy_last_reload_successful", Help: "1 if the last policy (re)load succeeded.",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baton_policy_last_reload_success_timestamp_seconds", Help: "When the policies were last loaded successfully.",
		}),
		StoreSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baton_store_sync_seconds", Help: "How long each group commit's sync to disk took.",
			Buckets: SyncBuckets,
		}),
		ActiveThreads: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "baton_active_threads", Help: "Threads with queued work and a running worker.",
		}, activeThreads),
		BotWaiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "baton_bot_waiting_threads", Help: "Threads whose decided events wait for the bot (being delivered, or parked after a failed attempt).",
		}, botWaiting),
		StaleItems: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baton_dispatch_stale_items_total", Help: "Queue items announced at or below their thread's decision cursor and dropped (never expected).",
		}),
		GraphWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baton_dispatch_graph_waits_total", Help: "Threads parked because the Graph API refused a rule's call for now (rate limit, rejected page token).",
		}),
	}
	m.GraphRateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_graph_rate_limited_total", Help: "Graph API calls answered with a rate limit (codes 4, 17, 32, 341, 613, 80001, 80006), by page.",
	}, []string{"page"})
	m.GraphRateLimitWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_graph_rate_limit_waits_total", Help: "Graph API calls that waited out their page token's shared rate-limit backoff, by page.",
	}, []string{"page"})
	m.GraphPageRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_graph_page_refused_total", Help: "Graph API calls refused without a request because the page's access token was rejected, by page.",
	}, []string{"page"})
	m.GraphPageHealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "baton_graph_page_healthy", Help: "1 while the Graph API accepts the page's access token, 0 after it rejected it (code 190) until a probe call succeeds.",
	}, []string{"page"})
	m.EventsAccepted = m.WebhookEvents.WithLabelValues("accepted")
	m.EventsDuplicate = m.WebhookEvents.WithLabelValues("duplicate")
	m.BotDelivered = m.BotDeliveries.WithLabelValues("ok")
	m.BotRejected = m.BotDeliveries.WithLabelValues("rejected")
	m.BotDeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_bot_dead_letters_total", Help: "Events set aside as dead letters, by reason: the bot refused them (rejected), kept failing past bot.retry_budget (budget), or they could not be read (unreadable).",
	}, []string{"reason"})
	m.StoreQueued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baton_store_queued_events", Help: "Events waiting in all thread queues (limits.queued_total caps them).",
	})
	m.StoreRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_store_refused_total", Help: "Webhook deliveries refused (503 with Retry-After) because taking their events would pass a limit, by limit.",
	}, []string{"limit"})
	m.StoreDiskFree = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baton_store_disk_free_bytes", Help: "Free space on the data directory's file system, as last read (below limits.min_free_disk_bytes webhooks are refused).",
	})
	m.StoreDiskBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "baton_store_disk_bytes", Help: "Disk space the store's files take, by kind: tables (LSM), value_log, wal (write-ahead logs).",
	}, []string{"kind"})
	reg.MustRegister(m.WebhookEvents, m.WebhookRefused, m.Decisions, m.Handovers, m.ActionFailures,
		m.BotDeliveries, m.SendsSkipped, m.Feedback, m.ReloadSuccess, m.ReloadTimestamp, m.ActiveThreads, m.StoreSync,
		m.BotWaiting, m.StaleItems,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// One registration per metric added since: a line each.
	reg.MustRegister(m.GraphWaits)
	m.BotCircuitOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baton_bot_circuit_open", Help: "1 while the bot's circuit is open: every delivery to the bot failed for a while, deliveries go one probe at a time and bot_down actions run.",
	})
	reg.MustRegister(m.BotCircuitOpen)
	m.OperatorActions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_operator_actions_total", Help: "Take, pass and release operations asked for by ops through the admin API, by action, counted once each has run.",
	}, []string{"action"})
	reg.MustRegister(m.OperatorActions)
	reg.MustRegister(m.GraphRateLimited)
	reg.MustRegister(m.GraphRateLimitWaits)
	reg.MustRegister(m.GraphPageRefused)
	reg.MustRegister(m.GraphPageHealthy)
	reg.MustRegister(m.BotDeadLetters)
	reg.MustRegister(m.StoreQueued)
	reg.MustRegister(m.StoreRefused)
	reg.MustRegister(m.StoreDiskFree)
	reg.MustRegister(m.StoreDiskBytes)
	m.Operations = newOperations(reg)
	return m
}

// SetStoreUsage sets the store's gauges from its latest report; a free
// space below zero is unknown and leaves the gauge as it was.
func (m *Metrics) SetStoreUsage(queued, free, tables, valueLogs, logs int64) {
	m.StoreQueued.Set(float64(queued))
	if free >= 0 {
		m.StoreDiskFree.Set(float64(free))
	}
	m.StoreDiskBytes.WithLabelValues("tables").Set(float64(tables))
	m.StoreDiskBytes.WithLabelValues("value_log").Set(float64(valueLogs))
	m.StoreDiskBytes.WithLabelValues("wal").Set(float64(logs))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
}
