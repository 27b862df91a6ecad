package bench

import "testing"

func TestRatioTextShowsWhichSideOfTheTarget(t *testing.T) {
	for _, c := range []struct {
		r, target float64
		want      string
	}{
		{0.65, 0.5, "0.65x"},
		{0.4967, 0.5, "0.497x"},
		{0.5, 0.5, "0.50x"},
		{2.004, 2, "2.004x"},
		{1.996, 2, "1.996x"},
		{2.94, 2, "2.94x"},
	} {
		if got := ratioText(c.r, c.target); got != c.want {
			t.Errorf("ratioText(%v, %v) = %q; want %q", c.r, c.target, got, c.want)
		}
	}
}
