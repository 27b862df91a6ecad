package sandbox

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/clock"
)

func startStorm(t *testing.T, o StormOptions) *Storm {
	t.Helper()
	s, err := StartStorm(o)
	if err != nil {
		t.Fatalf("StartStorm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// stormCall makes one Graph call through base as the bot and returns the
// status, the Graph error code (0 without Meta's error object) and the body.
func stormCall(t *testing.T, base, method, endpoint, body string) (int, int, string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	uri := base + "/" + DefaultVersion + "/me/" + endpoint + "?access_token=tok-" + testPage + "-" + botID
	if method == fasthttp.MethodGet {
		uri += "&recipient=" + alice
	}
	req.SetRequestURI(uri)
	req.Header.SetMethod(method)
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	var e errorEnvelope
	_ = json.Unmarshal(resp.Body(), &e) // a bare 502 has no error object: code 0
	return resp.StatusCode(), e.Error.Code, string(resp.Body())
}

// A share of the calls fails with transient errors of three shapes, the
// rest reach the platform; a failed call has no effect there.
func TestStormFailsAShareOfCallsWithoutEffect(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	s := startStorm(t, StormOptions{Target: f.p.URL(), Failure: 0.3, Seed: 7})
	const calls = 1000
	shapes := map[string]int{}
	for range calls {
		status, code, body := stormCall(t, s.URL(), fasthttp.MethodGet, "thread_owner", "")
		switch {
		case status == 200:
			shapes["ok"]++
		case status == 500 && code == 1, status == 503 && code == 2:
			shapes["graph"]++
		case status == 502 && code == 0 && strings.Contains(body, "Bad Gateway"):
			shapes["bare"]++
		default:
			t.Fatalf("unexpected answer %d code %d: %s", status, code, body)
		}
	}
	st := s.Stats()
	failed := st.Transient
	if failed < 250 || failed > 350 || shapes["graph"]+shapes["bare"] != failed || shapes["bare"] == 0 || shapes["graph"] == 0 {
		t.Errorf("failed %d of %d (%v); want about 30 %% in both shapes", failed, calls, shapes)
	}
	if st.Calls != calls || st.Forwarded != shapes["ok"] || st.RateLimited != 0 || st.Unreachable != 0 {
		t.Errorf("stats %+v; answers %v", st, shapes)
	}
	if n := len(f.p.Calls()); n != st.Forwarded {
		t.Errorf("the platform saw %d calls; want only the %d forwarded", n, st.Forwarded)
	}

	// A failed pass changes no owner; the same pass through a calm storm lands.
	s.SetFailure(1)
	pass := `{"recipient":{"id":"` + alice + `"},"target_app_id":"` + deskID + `"}`
	if status, _, _ := stormCall(t, s.URL(), fasthttp.MethodPost, "pass_thread_control", pass); status < 500 {
		t.Fatalf("pass in a full storm answered %d; want a 5xx", status)
	}
	if o := f.p.Owner(testPage, alice); o != botID {
		t.Fatalf("owner after a failed pass %q; want the bot still", o)
	}
	s.SetFailure(0)
	if status, _, body := stormCall(t, s.URL(), fasthttp.MethodPost, "pass_thread_control", pass); status != 200 {
		t.Fatalf("pass with no storm answered %d: %s", status, body)
	}
	if o := f.p.Owner(testPage, alice); o != deskID {
		t.Errorf("owner after the pass %q; want the helpdesk", o)
	}
}

// During a burst every call is answered 613 on the storm's clock; after
// it, calls go through again.
func TestStormRateLimitBurst(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	clk := clock.NewFake(testStart)
	s := startStorm(t, StormOptions{Target: f.p.URL(), Clock: clk})
	s.RateLimit(10 * time.Second)
	for range 5 {
		if status, code, _ := stormCall(t, s.URL(), fasthttp.MethodGet, "thread_owner", ""); status != 400 || code != 613 {
			t.Fatalf("during the burst: %d code %d; want 400 code 613", status, code)
		}
	}
	clk.Advance(9 * time.Second)
	if _, code, _ := stormCall(t, s.URL(), fasthttp.MethodGet, "thread_owner", ""); code != 613 {
		t.Fatalf("a second before the burst ends: code %d; want 613", code)
	}
	clk.Advance(time.Second)
	if status, _, body := stormCall(t, s.URL(), fasthttp.MethodGet, "thread_owner", ""); status != 200 {
		t.Fatalf("after the burst: %d %s; want 200", status, body)
	}
	if st := s.Stats(); st.RateLimited != 6 || st.Forwarded != 1 || st.Calls != 7 {
		t.Errorf("stats %+v; want 6 rate-limited and 1 forwarded", st)
	}
}

func TestStormOptionsAndUnreachableTarget(t *testing.T) {
	if _, err := StartStorm(StormOptions{Target: "graph.example", Failure: 1.5}); err == nil ||
		!strings.Contains(err.Error(), "Target") || !strings.Contains(err.Error(), "Failure 1.5") {
		t.Errorf("bad options: %v; want both problems", err)
	}
	// A closed port: the storm answers 502 and does not echo the URL, which
	// holds the access token.
	s := startStorm(t, StormOptions{Target: "http://127.0.0.1:1"})
	status, _, body := stormCall(t, s.URL(), fasthttp.MethodGet, "thread_owner", "")
	if status != 502 || strings.Contains(body, "tok-") {
		t.Errorf("unreachable target: %d %q; want a 502 without the token", status, body)
	}
	if st := s.Stats(); st.Unreachable != 1 {
		t.Errorf("stats %+v; want one unreachable", st)
	}
}
