package graph

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrUnknownPage is returned, without any network call, when a call names a
// page that has no access token in Options.Tokens.
var ErrUnknownPage = errors.New("unknown page (no access token configured)")

// Error is an error answered by the Graph API, decoded from Meta's
// {"error":{...}} object. A non-2xx answer without such an object becomes an
// Error with only HTTPStatus (and a short Message) set.
//
// Error never carries an access token: the client removes its tokens from
// the message before building it.
type Error struct {
	HTTPStatus int    // HTTP status of the answer
	Message    string // error.message, e.g. "(#10) ... another app is controlling this thread now."
	Type       string // error.type, e.g. "OAuthException"
	Code       int    // error.code
	Subcode    int    // error.error_subcode
	FBTraceID  string // error.fbtrace_id, for support tickets
	Endpoint   string // the Graph edge that was called, e.g. "pass_thread_control" or "messages"
	// RegainAfter is how long the API says a throttled token waits before
	// it may call again (X-Business-Use-Case-Usage's
	// estimated_time_to_regain_access); 0 when it did not say.
	RegainAfter time.Duration
}

// Error formats the error with everything needed to classify it later.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph api error")
	if e.Endpoint != "" {
		b.WriteString(" on ")
		b.WriteString(e.Endpoint)
	}
	b.WriteString(": ")
	if e.Message != "" {
		b.WriteString(e.Message)
	} else {
		b.WriteString("no message")
	}
	b.WriteString(" (http ")
	b.WriteString(strconv.Itoa(e.HTTPStatus))
	if e.Code != 0 {
		b.WriteString(", code ")
		b.WriteString(strconv.Itoa(e.Code))
	}
	if e.Subcode != 0 {
		b.WriteString(", subcode ")
		b.WriteString(strconv.Itoa(e.Subcode))
	}
	if e.Type != "" {
		b.WriteString(", type ")
		b.WriteString(e.Type)
	}
	if e.FBTraceID != "" {
		b.WriteString(", fbtrace_id ")
		b.WriteString(e.FBTraceID)
	}
	if e.RegainAfter > 0 {
		b.WriteString(", access regained in ")
		b.WriteString(e.RegainAfter.String())
	}
	b.WriteString(")")
	return b.String()
}

// Retryable reports whether the same call may succeed if repeated after a
// backoff. It is the one place where Graph errors are classified (see
// messenger-protocol.md §6.2):
//
//   - transient and throttling codes retry: 1 (except 1/99, a permission
//     problem), 2, 4, 17, 32, 341, 613 (except 613/2018338, a message-tag
//     misuse warning), 80001 and 80006;
//   - permission, parameter, token, policy and ownership codes never retry:
//     10 (including 10/2018300 and 10/2018278), 100, 190, 200-299, 551, 368
//     (a policy block that lasts far longer than any backoff) and 27;
//   - any other code follows the HTTP status: 5xx and 429 retry.
func (e *Error) Retryable() bool {
	switch e.Code {
	case 1:
		return e.Subcode != 99
	case 2, 4, 17, 32, 341, 80001, 80006:
		return true
	case 613:
		return e.Subcode != 2018338
	case 10, 100, 190, 551, 368, 27:
		return false
	}
	if e.Code >= 200 && e.Code <= 299 {
		return false
	}
	return e.HTTPStatus >= 500 || e.HTTPStatus == 429
}

// IsNotOwner reports whether err says that another app controls the thread
// (10/2018300 or 100/2534037). The caller should resync ownership with
// ThreadOwner rather than resend.
func IsNotOwner(err error) bool {
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	return (ge.Code == 10 && ge.Subcode == 2018300) || (ge.Code == 100 && ge.Subcode == 2534037)
}

// transportError is a failure to get any answer from the Graph API
// (refused, reset, timeout, ...). Its message has been redacted; the raw
// error is deliberately not kept because its text may contain the request
// URL and so the call's appsecret_proof. Unwrap exposes only a token-free
// sentinel (ErrTimeout or ErrBodyTooLarge) so that errors.Is keeps
// working.
type transportError struct {
	endpoint  string
	msg       string
	sentinel  error
	timeout   bool
	retryable bool
}

func (e *transportError) Error() string {
	return "graph transport error on " + e.endpoint + ": " + e.msg
}

func (e *transportError) Unwrap() error { return e.sentinel }

// Timeout reports whether the attempt timed out, like net.Error.
func (e *transportError) Timeout() bool { return e.timeout }

// newTransportError builds a redacted transportError from a raw client error.
func newTransportError(endpoint string, raw error, redact func(string) string) *transportError {
	te := &transportError{endpoint: endpoint, msg: redact(raw.Error()), retryable: true}
	var ne net.Error
	switch {
	case errors.Is(raw, ErrBodyTooLarge):
		// An oversized answer will be just as large next time.
		te.sentinel, te.retryable = ErrBodyTooLarge, false
	case errors.Is(raw, ErrTimeout), errors.Is(raw, context.DeadlineExceeded), errors.As(raw, &ne) && ne.Timeout():
		te.sentinel, te.timeout = ErrTimeout, true
	}
	return te
}

// tokenParam matches an access_token or appsecret_proof query parameter
// value in a URL.
var tokenParam = regexp.MustCompile(`(?i)((?:access_token|appsecret_proof)=)[^&\s"':#]*`)

// redactString removes every given secret (tokens, their proofs) from s,
// and any access_token=... or appsecret_proof=... query parameter whatever
// its value.
func redactString(s string, tokens []string) string {
	for _, t := range tokens {
		if t != "" {
			s = strings.ReplaceAll(s, t, "[redacted]")
		}
	}
	return tokenParam.ReplaceAllString(s, "${1}[redacted]")
}

// errorf formats a call-level error prefixed with the package name.
func errorf(endpoint, format string, args ...any) error {
	return fmt.Errorf("graph: "+endpoint+": "+format, args...)
}
