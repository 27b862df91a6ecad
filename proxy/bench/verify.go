package bench

import (
	"fmt"
	"slices"
	"time"
)

// Check is what the fake bot's records say about correctness.
type Check struct {
	Acked      int64 // events the target acknowledged
	Received   int64 // events the bot got (duplicates included)
	Lost       int64 // acknowledged, never received
	OutOfOrder int64 // received after a later event of the same user
	Duplicates int64 // received more than once
}

func (c Check) OK() bool { return c.Lost == 0 && c.OutOfOrder == 0 }

func (c Check) String() string {
	return fmt.Sprintf("%d acked, %d received, %d lost, %d out of order, %d duplicates",
		c.Acked, c.Received, c.Lost, c.OutOfOrder, c.Duplicates)
}

// verify compares what the bot received, in its order of arrival, with
// what was acknowledged: user u's acknowledged events are 1..acked[u].
func verify(recs []received, acked []uint32) Check {
	c := Check{Received: int64(len(recs))}
	last := make([]uint32, len(acked))
	distinct := make([]uint32, len(acked))
	for _, r := range recs {
		u := int(r.User)
		if u >= len(acked) {
			c.OutOfOrder++ // not ours at all: count it as wrong
			continue
		}
		switch {
		case r.Seq > last[u]:
			last[u] = r.Seq
			if r.Seq <= acked[u] {
				distinct[u]++
			}
		case r.Seq == last[u]:
			c.Duplicates++
		default:
			c.OutOfOrder++
		}
	}
	for u, a := range acked {
		c.Acked += int64(a)
		c.Lost += int64(a - min(a, distinct[u]))
	}
	return c
}

// toBot matches the open-loop events with their arrival at the bot: the
// time from when each event was due to leave until the bot had it.
func toBot(evs []sent, recs []received) []time.Duration {
	at := make(map[uint64]int64, len(evs))
	for _, r := range recs {
		k := uint64(r.User)<<32 | uint64(r.Seq)
		if _, ok := at[k]; !ok {
			at[k] = r.At
		}
	}
	out := make([]time.Duration, 0, len(evs))
	for _, e := range evs {
		if t, ok := at[uint64(e.user)<<32|uint64(e.seq)]; ok {
			out = append(out, time.Duration(t-e.intended))
		}
	}
	return out
}

// percentiles returns the given quantiles (0..1) of ds.
func percentiles(ds []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(ds) == 0 {
		return out
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	for i, q := range qs {
		idx := int(q * float64(len(s)))
		out[i] = s[min(idx, len(s)-1)]
	}
	return out
}
