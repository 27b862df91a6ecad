package graph

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAppUsagePercent(t *testing.T) {
	tests := []struct {
		name, header string
		want         float64
	}{
		{"absent", "", -1},
		{"meta's shape", `{"call_count":28,"total_time":25,"total_cputime":25}`, 28},
		{"highest figure wins", `{"call_count":3,"total_time":91,"total_cputime":7}`, 91},
		{"fraction", `{"call_count":80.5}`, 80.5},
		{"over the limit", `{"call_count":104}`, 104},
		{"some figures missing", `{"total_cputime":12}`, 12},
		{"no figure", `{"type":"app"}`, -1},
		{"negative", `{"call_count":-5}`, 0},
		{"capped", `{"call_count":1e9}`, maxUsagePercent},
		{"huge exponent", `{"call_count":1e400}`, -1},
		{"a number in a string", `{"call_count":"80"}`, 80},
		{"a word", `{"call_count":"high"}`, -1},
		{"not json", `call_count=80`, -1},
		{"wrong shape", `[{"call_count":80}]`, -1},
		{"oversized", `{"call_count":90,"pad":"` + strings.Repeat("x", maxUsageHeader) + `"}`, -1},
	}
	for _, tc := range tests {
		if got := appUsagePercent([]byte(tc.header)); got != tc.want {
			t.Errorf("%s: appUsagePercent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBusinessUsagePercent(t *testing.T) {
	tests := []struct {
		name, header string
		want         float64
	}{
		{"absent", "", -1},
		{"meta's shape", `{"104455667788990":[{"type":"pages","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":19}]}`, 100},
		{"highest of all entries", `{"1":[{"call_count":10},{"total_time":84}],"2":[{"total_cputime":61}]}`, 84},
		{"empty", `{}`, -1},
		{"null entries", `{"1":null}`, -1},
		{"no figure", `{"1":[{"type":"messenger","estimated_time_to_regain_access":3}]}`, -1},
		{"an unreadable figure beside a good one", `{"1":[{"call_count":1e400,"total_time":33}]}`, 33},
		{"not json", `{"1":[`, -1},
		{"wrong shape", `{"1":{"call_count":90}}`, -1},
	}
	for _, tc := range tests {
		if got := businessUsagePercent([]byte(tc.header)); got != tc.want {
			t.Errorf("%s: businessUsagePercent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// readUsage keeps each header apart, so the metric can say which one
// nears its limit, and takes the regain estimate with it.
func TestReadUsage(t *testing.T) {
	h := http.Header{}
	h.Set(HeaderAppUsage, `{"call_count":12,"total_time":3,"total_cputime":4}`)
	h.Set(HeaderBusinessUseCaseUsage, `{"1":[{"type":"messenger","call_count":97,"estimated_time_to_regain_access":2}]}`)
	u := readUsage(h)
	if u.percent != [len(usageKinds)]float64{12, -1, 97} || u.regain != 2*time.Minute || u.highest() != 97 {
		t.Errorf("readUsage = %+v", u)
	}
	if u := readUsage(http.Header{}); u.highest() != -1 || u.regain != 0 {
		t.Errorf("readUsage without headers = %+v", u)
	}
}

// The gap between a slowed token's calls grows in proportion from the
// threshold to 100 %.
func TestGapFor(t *testing.T) {
	c := &Client{usageThreshold: 80, usageSpacing: 2 * time.Second}
	for level, want := range map[float64]time.Duration{
		0: 0, 79.9: 0, 80: 0, 85: 500 * time.Millisecond, 90: time.Second, 100: 2 * time.Second, 400: 2 * time.Second,
	} {
		if got := c.gapFor(level); got != want {
			t.Errorf("gapFor(%v) = %v, want %v", level, got, want)
		}
	}
	if got := (&Client{usageThreshold: 100, usageSpacing: time.Second}).gapFor(100); got != 0 {
		t.Errorf("threshold 100: gap %v, want none (the limit takes over)", got)
	}
}

// FuzzUsageHeaders: whatever a usage header holds, the figure read is -1
// (none) or within [0, maxUsagePercent], and the gap it gives is within
// [0, UsageSpacing]; reading never panics.
func FuzzUsageHeaders(f *testing.F) {
	for _, s := range []string{
		`{"call_count":28,"total_time":25,"total_cputime":25}`,
		`{"104455667788990":[{"type":"pages","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":19}]}`,
		`{"call_count":1e308,"total_time":-1e308}`,
		`{"1":[{"call_count":"NaN"}],"2":[null]}`,
		`{"call_count":null}`, `{}`, `[]`, `null`, ``, `{"1":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	c := &Client{usageThreshold: DefaultUsageThreshold, usageSpacing: DefaultUsageSpacing}
	f.Fuzz(func(t *testing.T, header []byte) {
		for name, p := range map[string]float64{"app": appUsagePercent(header), "business": businessUsagePercent(header)} {
			if math.IsNaN(p) || (p != -1 && (p < 0 || p > maxUsagePercent)) {
				t.Fatalf("%s usage of %q = %v", name, header, p)
			}
			if g := c.gapFor(p); g < 0 || g > DefaultUsageSpacing {
				t.Fatalf("gap for %v = %v", p, g)
			}
		}
	})
}
