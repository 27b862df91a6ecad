package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// A Graph call's result label is one of a few words or the Graph error
// code, never free text.
func TestGraphCallLabels(t *testing.T) {
	m := New(func() float64 { return 0 })
	for _, c := range []struct {
		code int
		want string
	}{{0, "ok"}, {-1, "transport"}, {-2, "http"}, {613, "613"}, {10, "10"}, {12345678, "http"}} {
		m.GraphCall("messages", c.code, 20*time.Millisecond)
		var got dto.Metric
		if err := m.GraphCalls.WithLabelValues("messages", c.want).Write(&got); err != nil {
			t.Fatal(err)
		}
		if got.GetCounter().GetValue() < 1 {
			t.Errorf("code %d not counted as %q", c.code, c.want)
		}
	}
	var h dto.Metric
	if err := m.GraphLatency.WithLabelValues("messages").(interface{ Write(*dto.Metric) error }).Write(&h); err != nil {
		t.Fatal(err)
	}
	if n := h.GetHistogram().GetSampleCount(); n != 6 {
		t.Errorf("latency observed %d times; want 6", n)
	}
}
