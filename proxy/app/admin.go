package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/state"
)

// adminBackend is the admin API's view of a running Baton: reads go to
// the store, changes of a thread to the dispatcher, so they are ordered
// with the thread's events and journaled like a rule's decisions.
type adminBackend struct{ a *App }

var _ admin.Backend = adminBackend{}

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
