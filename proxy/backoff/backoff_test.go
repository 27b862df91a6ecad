package backoff

import (
	"testing"
	"time"
)

func TestDelayGrowsWithinBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; attempt <= 10; attempt++ {
		ceiling := p.Min << (attempt - 1)
		if ceiling > p.Max {
			ceiling = p.Max
		}
		for i := 0; i < 50; i++ {
			d := p.Delay(attempt)
			if d < max(ceiling/2, p.Min) || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	if d := (Policy{}).Delay(1); d != 100*time.Millisecond {
		t.Errorf("zero policy delay %v; want the 100ms default", d)
	}
	if d := (Policy{Min: time.Second, Max: time.Second}).Delay(3); d != time.Second {
		t.Errorf("min == max gives %v", d)
	}
}

func TestOrFillsOnlyUnsetBounds(t *testing.T) {
	def := Policy{Min: time.Second, Max: time.Minute}
	for _, c := range []struct{ in, want Policy }{
		{Policy{}, def},
		{Policy{Min: 5 * time.Millisecond}, Policy{Min: 5 * time.Millisecond, Max: time.Minute}},
		{Policy{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}, Policy{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}},
	} {
		if got := c.in.Or(def); got != c.want {
			t.Errorf("%+v.Or(%+v) = %+v; want %+v", c.in, def, got, c.want)
		}
	}
}
