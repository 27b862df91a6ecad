package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/state"
)

// The admin API commands against a running Baton are tested in cmd/baton
// (a real Baton from proxy/app on loopback); these fuzz what the client
// reads from outside: the --admin address and the API's answers.

func FuzzNewClient(f *testing.F) {
	for _, s := range []string{"", "127.0.0.1:9090", "http://127.0.0.1:9090", "https://baton.internal/admin/", "ftp://x", "http://u:p@h:1", "http://", "::1", "http://[::1]:9090", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, admin string) {
		c, err := NewClient(admin, "the-token")
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("NewClient(%q): %v; want a usage error", admin, err)
			}
			return
		}
		u := c.Base
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || strings.HasSuffix(u.Path, "/") {
			t.Fatalf("NewClient(%q) accepted %#v", admin, u)
		}
	})
}

// printable says whether s holds no control characters but newlines.
func printable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) < 0
}

// FuzzAPIAnswers: whatever an admin API answers, an error reads as lines
// of text, and a thread prints one line per item, never a terminal's
// control sequence.
func FuzzAPIAnswers(f *testing.F) {
	f.Add([]byte(`{"error":"thread: bad user id \"\"","problems":["a.yaml:1:2: x"]}`), 400)
	f.Add([]byte("upstream broke\r\n\x1b[31mred"), 502)
	f.Add([]byte(`{"thread":{"page":"1","user":"2","owner":"app:9","owner_name":"desk","since":"2026-03-01T09:00:00Z",
		"reason":{"rule":"r","event_id":"m1","actor":"operator","note":"VIP\n\x1b[2J"},"tags":["a","b\tc"],
		"last_user":"2026-03-01T09:00:00Z"},"history":[{"at":"2026-03-01T09:00:00Z","kind":"owner","from":{"kind":1},
		"to":{"kind":2,"app_id":"9\n9"},"reason":{"actor":"operator"}}],"timers":[{"kind":"expire","due":"2026-03-01T10:00:00Z"}],
		"queued":1,"pending_deliveries":0,"dead_letters":[{"page":"1","user":"2","seq":3,"reason":"bot said\nno","delivery_id":"3-x","kinds":["message"]}]}`), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		resp := &http.Response{StatusCode: 400 + (status%200+200)%200, Body: io.NopCloser(bytes.NewReader(body))}
		err := decodeError(resp)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || !printable(err.Error()) {
			t.Fatalf("decodeError(%q) = %q", body, err)
		}
		if n := strings.Count(err.Error(), "\n"); n != len(apiErr.Problems) {
			t.Fatalf("%d lines for %d problems: %q", n+1, len(apiErr.Problems), err)
		}

		var d admin.DetailView
		if json.Unmarshal(body, &d) != nil {
			return
		}
		var out bytes.Buffer
		if err := printThread(&out, d); err != nil {
			t.Fatal(err)
		}
		lines := 4 + len(d.Timers) + len(d.DeadLetters) + 1 + len(d.History)
		if reasonText(d.Thread.Reason) != "" {
			lines++
		}
		if len(d.Thread.Tags) > 0 {
			lines++
		}
		if got := strings.Count(out.String(), "\n"); got != lines || !printable(out.String()) {
			t.Fatalf("printed %d lines, want %d:\n%q", got, lines, out.String())
		}
	})
}

// Thread ids stay one path segment each, whatever they hold: a user id
// may be "ref:..." (a checkbox opt-in) and the API takes any.
func TestEndpointEscapesThreadIDs(t *testing.T) {
	c, err := NewClient("http://127.0.0.1:9090/baton/", "")
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]string{
		"1111":    "http://127.0.0.1:9090/baton/api/v1/threads/104/1111",
		"ref:abc": "http://127.0.0.1:9090/baton/api/v1/threads/104/ref:abc",
		"a/b?c#d": "http://127.0.0.1:9090/baton/api/v1/threads/104/a%2Fb%3Fc%23d",
		"50% off": "http://127.0.0.1:9090/baton/api/v1/threads/104/50%25%20off",
	} {
		if got := c.endpoint(threadPath(state.ThreadKey{Page: "104", User: user}), nil); got != want {
			t.Errorf("user %q: %s; want %s", user, got, want)
		}
	}
	q := url.Values{"thread": {"104/a&b"}}
	if got, want := c.endpoint("/api/v1/dead-letters", q), "http://127.0.0.1:9090/baton/api/v1/dead-letters?thread=104%2Fa%26b"; got != want {
		t.Errorf("query: %s; want %s", got, want)
	}
}
