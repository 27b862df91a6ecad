// Package guard is what the admin API and its dashboard share for the
// requests they refuse: the check of the admin token carried as a bearer
// header, and a log limiter so that refusals, which come as fast as a
// client sends them, cannot flood the log.
package guard

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Bearer reports whether r carries token as "Authorization: Bearer
// TOKEN", compared in constant time. An empty token matches nothing: a
// listener without one has no check to pass.
func Bearer(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	// The scheme is case-insensitive (RFC 7235); the token is not.
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

// LogEvery is how often a Sparse log lets a line through.
const LogEvery = 5 * time.Second

// Sparse lets a log line through at most once per LogEvery and counts the
// ones it held back. The zero value is ready.
type Sparse struct {
	mu   sync.Mutex
	next time.Time
	held int
}

// Pass reports whether a line may be written at now, and how many were
// held back since the last one written.
func (l *Sparse) Pass(now time.Time) (held int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.held++
		return 0, false
	}
	held, l.held, l.next = l.held, 0, now.Add(LogEvery)
	return held, true
}
