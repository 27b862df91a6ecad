package graph

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRetryLaterClassifies(t *testing.T) {
	ge := func(status, code, subcode int) error {
		return &Error{HTTPStatus: status, Code: code, Subcode: subcode, Endpoint: "pass_thread_control"}
	}
	wrap := func(err error) error { return fmt.Errorf("graph: messages: giving up after 5 attempts: %w", err) }
	tests := []struct {
		name                        string
		err                         error
		later, rateLimit, tokenGone bool
	}{
		{"nil", nil, false, false, false},
		{"613", ge(400, 613, 0), true, true, false},
		{"613/2534040", wrap(ge(400, 613, 2534040)), true, true, false},
		{"613/2018338 tag misuse", ge(400, 613, 2018338), false, false, false},
		{"4 app limit", ge(400, 4, 0), true, true, false},
		{"17 user limit", ge(400, 17, 0), true, true, false},
		{"32 page limit", ge(400, 32, 0), true, true, false},
		{"341", ge(400, 341, 0), true, true, false},
		{"80006 business use case", ge(400, 80006, 0), true, true, false},
		{"bare 429", ge(429, 0, 0), true, true, false},
		{"190", ge(400, 190, 0), true, false, true},
		{"190/463 expired", wrap(ge(400, 190, 463)), true, false, true},
		{"102 session", ge(400, 102, 0), true, false, true},
		{"460 password changed", ge(400, 999, 460), true, false, true},
		{"ErrRateLimited", fmt.Errorf("graph: messages: %w: waits 3m", ErrRateLimited), true, false, false},
		{"ErrPageUnhealthy", fmt.Errorf("graph: messages: page p: %w", ErrPageUnhealthy), true, false, false},
		{"100 bad parameter", ge(400, 100, 0), false, false, false},
		{"100/2018001 no such user", ge(400, 100, 2018001), false, false, false},
		{"100/2534037 not owner", ge(400, 100, 2534037), false, false, false},
		{"10/2018300 another app", ge(400, 10, 2018300), false, false, false},
		{"10/2018278 outside window", ge(400, 10, 2018278), false, false, false},
		{"551 unavailable", ge(400, 551, 0), false, false, false},
		{"200/1545041 unavailable", ge(400, 200, 1545041), false, false, false},
		{"368 policy block", ge(400, 368, 0), false, false, false},
		{"1 unknown, exhausted", wrap(ge(500, 1, 0)), false, false, false},
		{"bare 503, exhausted", wrap(ge(503, 0, 0)), false, false, false},
		{"transport", wrap(&transportError{endpoint: "messages", msg: "refused", retryable: true}), false, false, false},
		{"unknown page", fmt.Errorf("graph: messages: page \"x\": %w", ErrUnknownPage), false, false, false},
		{"cancelled", context.Canceled, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryLater(tc.err); got != tc.later {
				t.Errorf("RetryLater = %v, want %v", got, tc.later)
			}
			if got := IsRateLimit(tc.err); got != tc.rateLimit {
				t.Errorf("IsRateLimit = %v, want %v", got, tc.rateLimit)
			}
			if got := IsTokenRejected(tc.err); got != tc.tokenGone {
				t.Errorf("IsTokenRejected = %v, want %v", got, tc.tokenGone)
			}
		})
	}
}

// The errors the client itself returns are classified the same way: a
// refusal for good is not worth waiting for, whatever its HTTP status.
func TestRetryLaterOnClientErrors(t *testing.T) {
	tests := []struct {
		name  string
		reply reply
		later bool
	}{
		{"not the owner", graphErr(400, 10, 2018300, "(#10) another app is controlling this thread now."), false},
		{"bad parameter", graphErr(400, 100, 0, "(#100) Invalid parameter"), false},
		{"person unavailable", graphErr(400, 551, 1545041, "This person isn't available right now."), false},
		{"outage past the attempts", reply{503, ""}, false},
		{"token expired", graphErr(400, 190, 463, "Error validating access token: Session has expired"), true},
		{"rate limit past the attempts", graphErr(400, 17, 0, "(#17) User request limit reached"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(recorded, int) reply { return tc.reply }, func(o *Options) { o.MaxAttempts = 2 })
			var err error
			drive(t, e.clk, func() { err = e.c.PassThreadControl(context.Background(), pageA, user, "", "") })
			if err == nil {
				t.Fatal("no error")
			}
			if got := RetryLater(err); got != tc.later {
				t.Errorf("RetryLater(%v) = %v, want %v", err, got, tc.later)
			}
		})
	}
}

// FuzzErrorAnswer feeds arbitrary Graph API answers through the client's
// error decoding and classification: nothing panics, no token leaks into
// the error, and the classes stay consistent (a rate limit is never a
// rejected token, both are worth retrying later, neither is retried
// in the call when the token is rejected).
func FuzzErrorAnswer(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{400, `{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613,"error_subcode":2534040,"fbtrace_id":"A"}}`},
		{400, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"error_subcode":463}}`},
		{400, `{"error":{"message":"(#10) another app","code":10,"error_subcode":2018300}}`},
		{429, `Too Many Requests`},
		{500, `<html>oops</html>`},
		{200, `{"success":true}`},
		{400, `{"error":{"message":"bad token ` + tokenA + `","code":"190"}}`},
		{400, `{"error":null}`},
		{503, `{"error":{"code":1e3,"error_subcode":-1}}`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
	c, err := New(Options{BaseURL: "http://127.0.0.1:9", Tokens: map[string]string{pageA: tokenA}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		ge := c.decodeError("messages", answer{status: status, body: body})
		if ge == nil {
			if status < 200 || status > 299 {
				t.Fatalf("status %d decoded as success", status)
			}
			return
		}
		var err error = ge
		if strings.Contains(err.Error(), tokenA) {
			t.Fatalf("token in error %q", err)
		}
		limited, rejected := IsRateLimit(err), IsTokenRejected(err)
		if limited && rejected {
			t.Fatalf("%v is both a rate limit and a rejected token", err)
		}
		if (limited || rejected) != RetryLater(err) {
			t.Fatalf("RetryLater(%v) = %v, rate limit %v, rejected %v", err, RetryLater(err), limited, rejected)
		}
		if limited && !ge.Retryable() {
			t.Fatalf("rate limit %v not retryable", err)
		}
		if rejected && ge.Code == 190 && ge.Retryable() {
			t.Fatalf("rejected token %v retried", err)
		}
		wrapped := errors.Join(errors.New("context"), err)
		if RetryLater(wrapped) != RetryLater(err) {
			t.Fatalf("wrapping changed RetryLater of %v", err)
		}
	})
}

// A transport error carries no answer: it is neither class and the
// client's own retries handle it.
func TestTransportErrorIsNotRetriedLater(t *testing.T) {
	te := newTransportError("messages", ErrTimeout, func(s string) string { return s })
	if RetryLater(te) || IsRateLimit(te) || IsTokenRejected(te) {
		t.Errorf("transport error classified: later %v, limit %v, rejected %v", RetryLater(te), IsRateLimit(te), IsTokenRejected(te))
	}
}

// Transient covers RetryLater and the failures the client retries on its
// own (5xx, codes 1 and 2, no answer), never a refusal.
func TestTransientClassifies(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"rate limited", &Error{HTTPStatus: 400, Code: 613}, true},
		{"token rejected", &Error{HTTPStatus: 400, Code: 190}, true},
		{"server error", &Error{HTTPStatus: 500, Code: 1}, true},
		{"temporary", &Error{HTTPStatus: 503, Code: 2}, true},
		{"bare 502", &Error{HTTPStatus: 502}, true},
		{"no answer", fmt.Errorf("pass: %w", &transportError{endpoint: "pass_thread_control", msg: "refused", retryable: true}), true},
		{"body too large", &transportError{endpoint: "messages", msg: "too large"}, false},
		{"not the owner", &Error{HTTPStatus: 400, Code: 10, Subcode: 2018300}, false},
		{"bad parameter", &Error{HTTPStatus: 400, Code: 100}, false},
		{"unknown page", ErrUnknownPage, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient = %v; want %v", c.name, got, c.want)
		}
	}
}
