package guard

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestBearer(t *testing.T) {
	for _, c := range []struct {
		token, header string
		want          bool
	}{
		{"s3cret", "Bearer s3cret", true},
		{"s3cret", "Bearer  s3cret ", true}, // spaces around the token are not part of it
		{"s3cret", "Bearer s3cre", false},
		{"s3cret", "bearer s3cret", true}, // the scheme is case-insensitive (RFC 7235)
		{"s3cret", "BEARER s3cret", true},
		{"s3cret", "Bearer S3CRET", false}, // the token is not
		{"s3cret", "Basic s3cret", false},
		{"s3cret", "", false},
		{"", "Bearer ", false}, // no token: nothing matches
		{"", "", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got := Bearer(r, c.token); got != c.want {
			t.Errorf("Bearer(%q, token %q) = %v; want %v", c.header, c.token, got, c.want)
		}
	}
}

func TestSparseHoldsBackAndCounts(t *testing.T) {
	var l Sparse
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if held, ok := l.Pass(t0); !ok || held != 0 {
		t.Fatalf("first line: held %d, ok %v; want 0, true", held, ok)
	}
	for i := 1; i <= 3; i++ {
		if _, ok := l.Pass(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d within %v passed", i, LogEvery)
		}
	}
	if held, ok := l.Pass(t0.Add(LogEvery)); !ok || held != 3 {
		t.Fatalf("line after %v: held %d, ok %v; want 3, true", LogEvery, held, ok)
	}
	if _, ok := l.Pass(t0.Add(LogEvery + time.Second)); ok {
		t.Fatal("the window did not restart at the line that passed")
	}
}
