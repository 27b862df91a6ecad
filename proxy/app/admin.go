package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/admin/ui"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/state"
)

// adminBackend is the admin API's view of a running Baton: reads go to
// the store, changes of a thread to the dispatcher, so they are ordered
// with the thread's events and journaled like a rule's decisions.
type adminBackend struct{ a *App }

var _ admin.Backend = adminBackend{}

// dashboard is the admin listener's web pages, over the same Backend and
// token as the API.
func (a *App) dashboard() (*ui.UI, error) {
	cfg := a.opts.Config
	return ui.New(ui.Options{Backend: adminBackend{a}, Token: cfg.Admin.Token.Reveal(), Apps: cfg.Apps, Clock: a.opts.Clock, Logger: a.log})
}

func (b adminBackend) StoreWritable() error { return b.a.store.Writable() }

func (b adminBackend) PoliciesLoaded() error {
	if err := b.a.reloadErr.Load(); err != nil && *err != nil {
		return fmt.Errorf("the last policy reload failed, the rules before it run: %w", *err)
	}
	return nil
}

func (b adminBackend) PageHealth() map[string]bool { return b.a.graph.Health() }

func (b adminBackend) Draining() bool { return b.a.draining.Load() }

func (b adminBackend) ListThreads(ctx context.Context, f state.ThreadFilter, cursor string, limit int) ([]state.ThreadSummary, string, error) {
	return b.a.store.ListThreads(ctx, f, cursor, limit)
}

func (b adminBackend) Thread(ctx context.Context, k state.ThreadKey) (admin.Detail, error) {
	s := b.a.store
	seen, err := s.Seen(ctx, k)
	if err != nil {
		return admin.Detail{}, err
	}
	if !seen {
		return admin.Detail{}, fmt.Errorf("thread %s: %w", k, admin.ErrUnknownThread)
	}
	var d admin.Detail
	if d.Summary.Thread, err = s.Thread(ctx, k); err != nil {
		return admin.Detail{}, err
	}
	if d.History, err = s.History(ctx, k); err != nil {
		return admin.Detail{}, err
	}
	if d.Timers, err = s.ThreadTimers(ctx, k); err != nil {
		return admin.Detail{}, err
	}
	if d.Summary.Queued, d.Pending, err = s.QueueSizes(ctx, k, d.Summary.Thread.Decided); err != nil {
		return admin.Detail{}, err
	}
	if d.DeadLetters, err = s.ListDeadLetters(ctx, &k); err != nil {
		return admin.Detail{}, err
	}
	d.Summary.DeadLetters = len(d.DeadLetters)
	return d, nil
}

// Operate queues op on the thread: it runs in the thread's order, after
// any operation queued before it.
func (b adminBackend) Operate(ctx context.Context, k state.ThreadKey, op admin.Operation) error {
	if b.a.draining.Load() {
		return fmt.Errorf("%w: baton is stopping", admin.ErrUnavailable)
	}
	err := b.a.disp.Operate(ctx, k, dispatch.Operation{Kind: op.Kind, To: op.To, Reason: op.Reason})
	if errors.Is(err, dispatch.ErrUnknownThread) {
		return fmt.Errorf("thread %s: %w", k, admin.ErrUnknownThread)
	}
	return err
}

func (b adminBackend) DeadLetters(ctx context.Context, thread *state.ThreadKey) ([]state.DeadLetter, error) {
	return b.a.store.ListDeadLetters(ctx, thread)
}

func (b adminBackend) ReplayDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error) {
	if b.a.draining.Load() {
		return nil, fmt.Errorf("%w: baton is stopping", admin.ErrUnavailable)
	}
	return b.a.disp.ReplayDeadLetters(ctx, k, seq)
}

func (b adminBackend) DiscardDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error) {
	if b.a.draining.Load() {
		return nil, fmt.Errorf("%w: baton is stopping", admin.ErrUnavailable)
	}
	return b.a.disp.DiscardDeadLetters(ctx, k, seq)
}

func (b adminBackend) Reload() (int, error) { return b.a.reload() }

func (b adminBackend) Backup(ctx context.Context, w io.Writer) error { return b.a.store.Backup(ctx, w) }

func (b adminBackend) RecentHandovers(n int) []admin.Handover {
	recent := b.a.disp.RecentHandovers(n)
	out := make([]admin.Handover, 0, len(recent))
	for _, h := range recent {
		out = append(out, admin.Handover{At: h.At, Thread: h.Thread, From: h.From, To: h.To, Cause: h.Cause})
	}
	return out
}

func (b adminBackend) PolicyStatus() admin.PolicyStatus {
	st := admin.PolicyStatus{Rules: b.a.policies.Load().Rules()}
	if err := b.a.reloadErr.Load(); err != nil {
		st.Err = *err
	}
	// The gauge is the one record of when the running rules were loaded.
	for _, m := range collect(b.a.metrics.ReloadTimestamp) {
		if g := m.GetGauge(); g != nil && g.GetValue() > 0 {
			sec, frac := math.Modf(g.GetValue())
			st.LoadedAt = time.Unix(int64(sec), int64(frac*1e9))
		}
	}
	return st
}

// Figures reads the dashboard's figures from the metrics, so they agree
// with what Prometheus scrapes.
func (b adminBackend) Figures() admin.Figures {
	m := b.a.metrics
	f := admin.Figures{Handovers: map[string]uint64{}}
	for _, c := range collect(m.Handovers) {
		for _, l := range c.GetLabel() {
			if l.GetName() == "to" {
				f.Handovers[l.GetValue()] += uint64(c.GetCounter().GetValue())
			}
		}
	}
	f.FirstAgentReply = distribution(m.FirstAgentReply)
	f.WithPeople = distribution(m.WithPeople)
	return f
}

// collect reads a collector's metrics as Prometheus would scrape them.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}

func distribution(h prometheus.Histogram) admin.Distribution {
	var d admin.Distribution
	for _, m := range collect(h) {
		if hist := m.GetHistogram(); hist != nil {
			d.Count += hist.GetSampleCount()
			d.Sum += time.Duration(hist.GetSampleSum() * float64(time.Second))
		}
	}
	return d
}
