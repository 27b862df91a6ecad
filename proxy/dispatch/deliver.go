package dispatch

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// parcel is a decided queue item's delivery to the bot: its records (the
// event as it came, or what the decision made of it: the event on standby,
// postbacks for the bot), sent in order.
type parcel struct {
	seq     uint64
	records [][]byte
	// events are the records decoded, when the decision had them at hand
	// (nil after a restart: try decodes each record).
	events   []messenger.Event
	sent     int    // records the bot accepted (or refused for good)
	rejected string // why records were set aside (the first reason)
	// dead are the records set aside, for deadKind (deadletter.go);
	// failing is the first failed (or held back) attempt at the current
	// record, zero while none failed (the retry budget runs from it), and
	// lastErr the bot's last answer to it.
	dead     [][]byte
	deadKind string
	failing  time.Time
	lastErr  error
	// enqueued is when Baton accepted the item (stored with it, so it
	// survives a restart): the retry budget counts from it.
	enqueued time.Time
	// one holds the record of a parcel that has just one (nearly all),
	// so that records needs no allocation of its own.
	one [1][]byte
}

// setRecord makes rec the parcel's only record.
func (pc *parcel) setRecord(rec []byte) {
	pc.one[0] = rec
	pc.records = pc.one[:]
}

// size is roughly what the parcel holds in memory.
func (pc *parcel) size() int {
	n := 64 + 256*len(pc.events) // the slices, and each decoded event's fields
	for _, r := range pc.records {
		n += len(r)
	}
	return n
}

// DeliveryID is the id of a queue item's record, sent to the bot in
// forward.DeliveryHeader: the item's sequence number and a hash of the
// record (an item may carry several: the event, postbacks for the bot).
// It stays the same across retries and restarts, and whatever is left of
// the item to deliver. The hash also keeps two events apart if a power
// loss took back sequence numbers that were never synced (events reach
// the bot before their sync): the event then acknowledged under a reused
// number is another one, and a bot that drops ids it has seen must not
// drop it.
func DeliveryID(seq uint64, record []byte) string {
	// FNV-1a, 32 bits (hash/fnv's, without allocating a hasher per event).
	h := uint32(2166136261)
	for _, c := range record {
		h = (h ^ uint32(c)) * 16777619
	}
	var buf [40]byte
	b := strconv.AppendUint(buf[:0], seq, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(h), 36)
	return string(b)
}

// deliverThread delivers the thread's decided items in order until its
// outbox is empty, or parks the thread with its backoff when the bot
// fails: a delivery runner never waits for a down bot.
func (d *Dispatcher) deliverThread(w *worker) {
	for {
		d.mu.Lock()
		spilled := len(w.outbox) == 0 && w.spilled && d.ctx.Err() == nil
		d.mu.Unlock()
		if spilled {
			if err := d.readBack(w); err != nil {
				d.log.Error("reading decided items back failed, will retry", logkeys.Thread(w.key), zap.Error(err))
				d.park(w, d.opts.Retry.Delay(1))
				return
			}
			// Read again if a decision landed during the read (its parcel
			// went to the store, and nobody else will deliver it).
			continue
		}
		d.mu.Lock()
		if len(w.outbox) == 0 || d.ctx.Err() != nil {
			w.delivering = false
			d.forgetLocked(w)
			d.mu.Unlock()
			return
		}
		pc := w.outbox[0]
		d.mu.Unlock()

		for pc.sent < len(pc.records) {
			if wait, ok := d.botTurn(w, pc); !ok {
				// The bot's circuit is open and this is not the probe.
				d.keepProgress(w, pc)
				if d.spent(w, pc, errHeldBack) {
					break
				}
				d.park(w, wait)
				return
			}
			err := d.try(w, pc)
			d.botOutcome(w, pc, err)
			if err == nil {
				continue
			}
			d.keepProgress(w, pc)
			if d.io.Err() != nil {
				d.mu.Lock()
				w.delivering = false
				d.mu.Unlock()
				return
			}
			w.attempt++
			if d.spent(w, pc, err) {
				break
			}
			// Logged at each doubling of the attempts only (the circuit says
			// when the bot is down as a whole).
			if backoff.LogStep(w.attempt) {
				if ce := d.log.Check(zap.WarnLevel, "bot delivery failed, thread parked"); ce != nil {
					ce.Write(logkeys.Thread(w.key), zap.Uint64("seq", pc.seq), zap.Int("attempt", w.attempt), zap.Error(err))
				}
			}
			d.park(w, d.retryDelay(w, err))
			return
		}
		var err error
		if pc.rejected == "" {
			// Lazy: a crash before the next sync delivers the item again
			// (same id). The store takes it without waiting, whatever ctx.
			err = d.opts.Store.Complete(context.Background(), state.Completion{Thread: w.key, Seq: pc.seq, Lazy: true})
		} else {
			err = d.setAside(w, pc)
		}
		if err != nil {
			d.log.Error("delivery not committed; the item will be delivered again", logkeys.Thread(w.key), zap.Uint64("seq", pc.seq), zap.Error(err))
		}
		d.mu.Lock()
		w.outbox[0] = nil
		w.outbox = w.outbox[1:]
		w.delivered = pc.seq
		d.outboxBytes -= pc.size()
		if len(w.outbox) == 0 && !w.spilled {
			d.waiting--
		}
		d.mu.Unlock()
	}
}

// keepProgress commits what is left of a parcel the bot took part of
// (the event but not yet a postback after it) before the thread parks or
// stops: a restart then does not deliver the first part again. Not when
// part of it was set aside: the stored item is then all that keeps those
// records until the dead letter is committed, and a restart had better
// deliver the first part again (same ids) than lose them.
func (d *Dispatcher) keepProgress(w *worker, pc *parcel) {
	if pc.sent == 0 || pc.sent >= len(pc.records) || len(pc.dead) > 0 {
		return
	}
	rest := pc.records[pc.sent:]
	if err := d.commitNow(d.io, state.Completion{Thread: w.key, Seq: pc.seq, Outbox: rest}); err != nil {
		d.log.Error("delivery progress not committed; the delivered part may be delivered again", logkeys.Thread(w.key), zap.Uint64("seq", pc.seq), zap.Error(err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.outboxBytes -= pc.size()
	if len(pc.events) > pc.sent {
		pc.events = pc.events[pc.sent:]
	} else {
		pc.events = nil
	}
	pc.records, pc.sent = rest, 0
	d.outboxBytes += pc.size()
}

// readBack fills an empty outbox with the thread's next decided items
// from the store, after its parcels outgrew the memory budget.
func (d *Dispatcher) readBack(w *worker) error {
	d.mu.Lock()
	after, decided := w.delivered, w.lastSeq
	if w.rewind {
		after, w.rewind = 0, false
	}
	d.mu.Unlock()
	items, err := d.opts.Store.Head(d.io, w.key, after, headMax)
	if err != nil {
		return err
	}
	var back []*parcel
	for _, q := range items {
		if q.Seq > decided {
			break
		}
		pc := &parcel{seq: q.Seq, records: q.Outbox, enqueued: q.Enqueued}
		if !q.Decided {
			pc.setRecord(q.Record)
		}
		back = append(back, pc)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, pc := range back {
		w.outbox = append(w.outbox, pc)
		d.outboxBytes += pc.size()
	}
	// The read covered every item decided when it began if it ended
	// before headMax items or at an undecided one; if no decision came
	// since, everything decided is in memory again, and parcels decided
	// from now on may stay there.
	covered := len(items) < headMax || len(back) < len(items)
	if covered && w.lastSeq == decided {
		w.spilled = false
	}
	if len(w.outbox) == 0 && !w.spilled {
		d.waiting--
	}
	return nil
}

// try sends the parcel's next record once. A refusal counts towards
// MaxRejects and is then set aside, so one bad event never holds the
// thread forever.
func (d *Dispatcher) try(w *worker, pc *parcel) error {
	var ev messenger.Event
	if pc.sent < len(pc.events) {
		ev = pc.events[pc.sent]
	} else {
		var err error
		if ev, err = messenger.DecodeRecord(pc.records[pc.sent]); err != nil {
			pc.markDead(deadUnreadable, "unreadable: "+err.Error())
			return nil
		}
	}
	buf := envelopes.Get().(*[]byte)
	body := messenger.AppendEnvelope((*buf)[:0], &ev)
	id := DeliveryID(pc.seq, pc.records[pc.sent])
	sent := time.Now()
	err := d.opts.Bot.Try(d.io, id, body)
	m := &d.opts.Metrics.Operations
	m.BotLatency.Observe(time.Since(sent).Seconds())
	if cap(body) <= maxPooledEnvelope {
		*buf = body
		envelopes.Put(buf)
	}
	var rej *forward.RejectedError
	switch {
	case err == nil:
		d.opts.Metrics.BotDelivered.Inc()
		m.BotAttemptOK.Inc()
		pc.sent++
	case errors.As(err, &rej):
		m.BotAttemptRejected.Inc()
		if w.rejects++; w.rejects < d.opts.MaxRejects {
			return err
		}
		d.opts.Metrics.BotRejected.Inc()
		// One Try is one attempt; the dispatcher counted the others.
		counted := *rej
		counted.Attempts = w.rejects
		d.log.Error("bot rejected event, set aside", logkeys.Thread(w.key), zap.String("delivery", id), zap.Error(&counted))
		pc.markDead(deadRejected, counted.Error())
	default:
		if d.io.Err() == nil {
			m.BotAttemptFailed.Inc()
		}
		return err
	}
	pc.failing, pc.lastErr = time.Time{}, nil
	w.attempt, w.rejects = 0, 0
	return nil
}

// envelopes are the buffers events are wrapped in for the bot; Bot.Try
// is done with the body when it returns.
var envelopes = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledEnvelope keeps an unusually large event's buffer out of the pool.
const maxPooledEnvelope = 64 << 10
