package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// The pure parts: which forms count as the dashboard's own, thread links
// that come back as the same thread, durations. The pages themselves are
// tested against a running Baton in proxy/app.

func TestFromHost(t *testing.T) {
	const host = "127.0.0.1:9090"
	for _, tt := range []struct {
		origin, referer string
		want            bool
	}{
		{"http://127.0.0.1:9090", "", true},
		{"https://127.0.0.1:9090", "", true}, // behind a TLS proxy
		{"", "http://127.0.0.1:9090/ui/threads/1/2", true},
		{"HTTP://127.0.0.1:9090", "", true},
		{"", "", false},
		{"null", "", false},
		{"null", "http://127.0.0.1:9090/ui/", false}, // an Origin, even null, is what counts
		{"http://evil.example", "http://127.0.0.1:9090/ui/", false},
		{"http://127.0.0.1:9091", "", false},
		{"http://127.0.0.1", "", false},
		{"http://127.0.0.1:9090.evil.example", "", false},
		{"http://user@evil.example", "", false},
		{"file://127.0.0.1:9090", "", false},
		{"javascript:alert(1)", "", false},
		{"//127.0.0.1:9090", "", false},
		{"", "/ui/", false},
		{"", "::", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://"+host+"/ui/threads/1/2/take", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.referer != "" {
			r.Header.Set("Referer", tt.referer)
		}
		if got := fromHost(r); got != tt.want {
			t.Errorf("Origin %q Referer %q: %v; want %v", tt.origin, tt.referer, got, tt.want)
		}
	}
}

// FuzzFromHost: no header makes it panic, and one it accepts names the
// request's host.
func FuzzFromHost(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:9090", "null", "http://evil.example", "http://127.0.0.1:9090/x?y#z", "%", "http://[::1]:9090"} {
		f.Add(s, "127.0.0.1:9090")
	}
	f.Fuzz(func(t *testing.T, origin, host string) {
		r := httptest.NewRequest(http.MethodPost, "/ui/login", nil)
		r.Host = host
		r.Header.Set("Origin", origin)
		if fromHost(r) {
			u, err := url.Parse(origin)
			if err != nil || !strings.EqualFold(u.Host, host) || host == "" {
				t.Fatalf("accepted Origin %q for host %q", origin, host)
			}
		}
	})
}

// threadRoute answers with the thread the dashboard's route reads from
// the path, as the page handlers do.
func threadRoute() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/threads/{page}/{user}", func(w http.ResponseWriter, r *http.Request) {
		k, err := threadKey(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Page", url.QueryEscape(k.Page))
		w.Header().Set("X-User", url.QueryEscape(k.User))
	})
	return mux
}

func roundTrip(t *testing.T, mux *http.ServeMux, k state.ThreadKey) (state.ThreadKey, int) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://admin"+threadPath(k), nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	page, _ := url.QueryUnescape(w.Header().Get("X-Page"))
	user, _ := url.QueryUnescape(w.Header().Get("X-User"))
	return state.ThreadKey{Page: page, User: user}, w.Code
}

// A link to a thread leads to that thread, whatever its user id holds.
func TestThreadPathRoundTrips(t *testing.T) {
	mux := threadRoute()
	for _, user := range []string{"7712345678901234", "a/b", "50%", "%2F", "../../api/v1/backup", "<script>", "sp ace", "?q=1#f", "ünï", "...", ".a"} {
		k := state.ThreadKey{Page: "104455667788990", User: user}
		got, code := roundTrip(t, mux, k)
		if code != http.StatusOK || got != k {
			t.Errorf("user %q: %d %+v (path %s)", user, code, got, threadPath(k))
		}
	}
}

func FuzzThreadPath(f *testing.F) {
	for _, s := range []string{"7712345678901234", "a/b", "%", "..a", "\x00", "a b"} {
		f.Add(s)
	}
	mux := threadRoute()
	f.Fuzz(func(t *testing.T, user string) {
		// "." and ".." are no Messenger ids (PSIDs are digits), and no
		// link could hold them: browsers, like the URL standard, drop
		// such a segment, escaped or not. Nor is "/", which net/http's
		// router does not match as one escaped segment (as for the API).
		if user == "" || len(user) > 256 || user == "." || user == ".." || user == "/" {
			return
		}
		k := state.ThreadKey{Page: "104455667788990", User: user}
		if got, code := roundTrip(t, mux, k); code != http.StatusOK || got != k {
			t.Fatalf("user %q: %d %+v (path %s)", user, code, got, threadPath(k))
		}
	})
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                         "0s",
		0:                                    "0s",
		45 * time.Second:                     "45s",
		2*time.Minute + 30*time.Second:       "2m30s",
		2 * time.Minute:                      "2m",
		12*time.Minute + 30*time.Second:      "12m",
		3*time.Hour + 5*time.Minute:          "3h05m",
		52*time.Hour + 10*time.Minute:        "2d04h",
		9*time.Minute + 59*time.Second:       "9m59s",
		2*time.Minute + 500*time.Millisecond: "2m",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q; want %q", d, got, want)
		}
	}
}
