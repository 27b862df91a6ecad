package graph

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRegainAfter(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   time.Duration
	}{
		{"absent", "", 0},
		{"meta's shape", `{"104455667788990":[{"type":"pages","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":19}]}`, 19 * time.Minute},
		{"longest entry wins", `{"1":[{"estimated_time_to_regain_access":2},{"estimated_time_to_regain_access":5}],"2":[{"estimated_time_to_regain_access":3}]}`, 5 * time.Minute},
		{"fraction", `{"1":[{"estimated_time_to_regain_access":0.5}]}`, 30 * time.Second},
		{"zero: not throttled", `{"1":[{"type":"pages","call_count":40,"estimated_time_to_regain_access":0}]}`, 0},
		{"negative", `{"1":[{"estimated_time_to_regain_access":-3}]}`, 0},
		{"capped", `{"1":[{"estimated_time_to_regain_access":1e9}]}`, maxRegainAfter},
		{"huge exponent", `{"1":[{"estimated_time_to_regain_access":1e400}]}`, 0},
		{"not json", `call_count=100`, 0},
		{"wrong shape", `[{"estimated_time_to_regain_access":5}]`, 0},
		{"not a number", `{"1":[{"estimated_time_to_regain_access":"soon"}]}`, 0},
		{"no field", `{"1":[{"type":"pages"}]}`, 0},
		{"oversized", `{"1":[{"estimated_time_to_regain_access":5,"pad":"` + strings.Repeat("x", maxUsageHeader) + `"}]}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := regainAfter([]byte(tc.header)); got != tc.want {
				t.Errorf("regainAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzRegainAfter: whatever the header, the wait read from it is between
// 0 and maxRegainAfter, and reading it never panics.
func FuzzRegainAfter(f *testing.F) {
	for _, s := range []string{
		`{"104455667788990":[{"type":"pages","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":19}]}`,
		`{"1":[{"estimated_time_to_regain_access":1e308}]}`,
		`{"1":[{"estimated_time_to_regain_access":-0.0}],"2":null}`,
		`{"1":[{"estimated_time_to_regain_access":"7"}]}`,
		`{}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		if d := regainAfter(header); d < 0 || d > maxRegainAfter {
			t.Fatalf("regainAfter(%q) = %v", header, d)
		}
	})
}

// A rate limit whose usage header says access comes back in 3 minutes
// holds the token's calls for those 3 minutes, not for the shorter
// backoff of the first round.
func TestRateLimitHonoursTheUsageHeader(t *testing.T) {
	e := newEnv(t, func(_ recorded, n int) reply {
		if n == 0 {
			return graphErr(400, 80001, 0, "(#80001) There have been too many calls to this Page account.")
		}
		return reply{200, `{"success":true}`}
	}, func(o *Options) { o.RateLimitMin, o.RateLimitMax = time.Second, time.Minute })
	e.g.mu.Lock()
	e.g.headers = map[string]string{HeaderBusinessUseCaseUsage: `{"` + pageA + `":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":3}]}`}
	e.g.mu.Unlock()
	var err error
	drive(t, e.clk, func() { err = e.c.TakeThreadControl(context.Background(), pageA, user, "") })
	if err != nil {
		t.Fatal(err)
	}
	if waits := e.clk.recorded(); len(waits) != 1 || waits[0] != 3*time.Minute {
		t.Errorf("waited %v, want the header's 3m", waits)
	}

	// Past the call's budget, the estimate ends the call at once, and the
	// error says when access comes back.
	e2 := newEnv(t, func(recorded, int) reply {
		return graphErr(400, 80001, 0, "(#80001) There have been too many calls to this Page account.")
	}, func(o *Options) { o.CallBudget = time.Minute })
	e2.g.mu.Lock()
	e2.g.headers = map[string]string{HeaderBusinessUseCaseUsage: `{"` + pageA + `":[{"estimated_time_to_regain_access":19}]}`}
	e2.g.mu.Unlock()
	err = e2.c.TakeThreadControl(context.Background(), pageA, user, "")
	var ge *Error
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &ge) || ge.RegainAfter != 19*time.Minute ||
		!strings.Contains(err.Error(), "access regained in 19m0s") {
		t.Errorf("err = %v", err)
	}
	if n := len(e2.g.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}
