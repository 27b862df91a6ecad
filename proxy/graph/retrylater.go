package graph

import (
	"errors"
)

// ErrRateLimited matches (errors.Is) the error of a call that the Graph API
// kept rate-limiting: its attempts ran out while the limit lasted, or its
// page token's shared backoff ends past the call's time budget or its
// context's deadline, so it was not waited out.
var ErrRateLimited = errors.New("rate limited by the Graph API")

// ErrPageUnhealthy matches (errors.Is) the error of a call whose page
// access token the Graph API rejected (code 190): the call that saw the
// rejection, and every later call for that page refused without a request
// until a probe call finds the token accepted again.
var ErrPageUnhealthy = errors.New("page unhealthy: the Graph API rejected its access token")

// IsRateLimit reports whether err carries a Graph API rate-limit answer:
// codes 4 (app), 17 (user), 32 (page), 341 (application limit), 613
// (custom limit; except 613/2018338, a message-tag misuse warning that no
// wait cures), the business-use-case limits 80001 and 80006, or an HTTP 429
// without a Graph error code.
func IsRateLimit(err error) bool {
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.Code {
	case 4, 17, 32, 341, 80001, 80006:
		return true
	case 613:
		return ge.Subcode != 2018338
	case 0:
		return ge.HTTPStatus == 429
	}
	return false
}

// IsTokenRejected reports whether err carries a Graph API answer that
// rejects the access token: code 190 (invalid or expired token, whatever
// the subcode), code 102 (session no longer valid), or one of the
// subcodes Meta gives an expired or invalidated session (458 app not
// installed, 459 checkpoint, 460 password changed, 463 expired, 464
// unconfirmed user, 467 invalid token, 492 invalid session).
func IsTokenRejected(err error) bool {
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.Code {
	case 190, 102:
		return true
	}
	switch ge.Subcode {
	case 458, 459, 460, 463, 464, 467, 492:
		return true
	}
	return false
}

// RetryLater reports whether the effect that failed with err is worth
// trying again later rather than failing for good: true when its page is
// unhealthy (the token was rejected; see ErrPageUnhealthy) and when the
// Graph API rate-limits it (see ErrRateLimited), false for everything
// else, from a refusal that repeating cannot change (bad parameters, not
// the thread owner, person unavailable, a policy block) to transient
// errors that outlasted the call's attempts.
func RetryLater(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, ErrPageUnhealthy) || errors.Is(err, ErrRateLimited) ||
		IsTokenRejected(err) || IsRateLimit(err)
}

// Transient reports whether err is a failure that may pass on its own
// and that the client already retried up to its attempts: a 5xx or code
// 1/2 answer, a rate limit, or no answer at all (refused, reset, timeout).
// The dispatcher waits such a failure out too, within graph.retry_budget,
// so a handover is not given up after a few seconds of a Graph API
// outage; RetryLater alone keeps the narrower meaning.
func Transient(err error) bool {
	if RetryLater(err) {
		return true
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Retryable()
	}
	var te *transportError
	return errors.As(err, &te) && te.retryable
}
