// Package ui is Baton's dashboard, served on the admin listener under
// /ui/: the threads now with people and for how long, the recent
// handovers with what caused each, dead letters, the policies' status and
// the handover figures, and a page per thread with its timeline, from
// which an operator takes the thread back or replays its dead letters.
//
// Pages are rendered on the server with html/template, which escapes
// what comes from outside (user ids, notes, reasons), plus one embedded
// style sheet; there is no JavaScript and no build step. The overview
// reloads itself every 10 seconds.
//
// # Authentication
//
// Without an admin token (Baton then listens on loopback only) every page
// is open. With one, a login form takes the token and sets a session
// cookie (HttpOnly, SameSite=Strict, Path=/ui, Secure over TLS) whose
// value is derived from the token with a key made at start, so the
// cookie never holds the token and a restart signs everyone out. A
// request may also carry the token as a bearer header. The cookie is
// worth nothing outside /ui: the API's routes take only the header.
//
// Every POST must come from one of these pages: besides SameSite=Strict,
// its Origin (or, without one, its Referer) must name the request's Host,
// else it is refused with 403. After a POST the browser is sent back to
// the thread's page with a short message (Post/Redirect/Get).
package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/admin/internal/guard"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/state"
)

//go:embed templates/*.html static/*
var files embed.FS

// Options configure the dashboard.
type Options struct {
	Backend admin.Backend // required
	// Token is the admin token; empty: no login.
	Token string
	// Apps are the config's named apps (name -> app id): owners are shown
	// by name.
	Apps   map[string]string
	Clock  clock.Clock // default: the wall clock
	Logger *zap.Logger // default: nop
}

// UI is the dashboard's handler, for every path under /ui/.
type UI struct {
	opts    Options
	log     *zap.Logger
	appName map[string]string // app id -> name
	// session is the cookie's value when a token is set: HMAC-SHA256 of
	// the token under a key made in New.
	session string
	pages   map[string]*template.Template
	mux     *http.ServeMux
	refused guard.Sparse
}

// Names of the cookies, and the path they are limited to.
const (
	sessionCookie = "baton_session"
	flashCookie   = "baton_flash"
	cookiePath    = "/ui"
	// sessionAge bounds how long a browser keeps a session.
	sessionAge = 12 * time.Hour
	// maxForm bounds a form's body; maxReason the take's reason (as the
	// API does).
	maxForm   = 16 << 10
	maxReason = 1000
)

// New builds the dashboard.
func New(o Options) (*UI, error) {
	if o.Backend == nil {
		return nil, errors.New("ui: Options.Backend is required")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	u := &UI{opts: o, log: o.Logger.Named("dashboard"), appName: admin.AppNames(o.Apps)}
	if o.Token != "" {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("ui: session key: %w", err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(o.Token))
		u.session = hex.EncodeToString(mac.Sum(nil))
	}
	var err error
	if u.pages, err = u.parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	mux := http.NewServeMux()
	serveStatic := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /ui/static/{file}", func(w http.ResponseWriter, r *http.Request) {
		serveStatic.ServeHTTP(w, r) // a file, never the directory's listing
	})
	mux.HandleFunc("GET /ui/login", u.loginForm)
	mux.HandleFunc("POST /ui/login", u.sameOrigin(u.login))
	mux.HandleFunc("POST /ui/logout", u.sameOrigin(u.logout))
	mux.HandleFunc("GET /ui/{$}", u.signedIn(u.overview))
	mux.HandleFunc("GET /ui/threads/{page}/{user}", u.signedIn(u.thread))
	mux.HandleFunc("POST /ui/threads/{page}/{user}/take", u.signedIn(u.sameOrigin(u.take)))
	mux.HandleFunc("POST /ui/threads/{page}/{user}/replay", u.signedIn(u.sameOrigin(u.replay)))
	mux.HandleFunc("/ui/", u.signedIn(func(w http.ResponseWriter, r *http.Request) {
		u.errorPage(w, r, http.StatusNotFound, "No such page.")
	}))
	u.mux = mux
	return u, nil
}

// ServeHTTP serves the dashboard with headers that keep its pages out of
// frames and caches and allow nothing but its own style sheet.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Same-origin requests keep their Referer, the CSRF check's fallback.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	u.mux.ServeHTTP(w, r)
}

// authorized reports whether r carries the session cookie or the bearer
// token (always, without a token).
func (u *UI) authorized(r *http.Request) bool {
	if u.opts.Token == "" {
		return true
	}
	if c, err := r.Cookie(sessionCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(u.session)) == 1 {
		return true
	}
	return guard.Bearer(r, u.opts.Token)
}

// signedIn sends a request without a session to the login form.
func (u *UI) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !u.authorized(r) {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		next(w, r)
	}
}

// sameOrigin refuses a POST that does not come from a page of this host.
func (u *UI) sameOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !fromHost(r) {
			if held, ok := u.refused.Pass(u.opts.Clock.Now()); ok {
				u.log.Warn("dashboard form refused: it did not come from the dashboard", zap.String("path", clip(r.URL.Path)),
					zap.String("origin", clip(r.Header.Get("Origin"))), zap.String("remote", r.RemoteAddr), zap.Int("held_back", held))
			}
			u.errorPage(w, r, http.StatusForbidden, "This form did not come from the dashboard (its Origin or Referer names another host), so nothing was done.")
			return
		}
		next(w, r)
	}
}

// fromHost reports whether r's Origin, or its Referer when it has no
// Origin, names r's Host. A browser sets both and a page cannot forge
// them; a request with neither is refused, as one from another site.
func fromHost(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" || src == "null" {
		return false
	}
	s, err := url.Parse(src)
	if err != nil || (s.Scheme != "http" && s.Scheme != "https") || s.Host == "" {
		return false
	}
	return strings.EqualFold(s.Host, r.Host)
}

func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	if u.opts.Token == "" || u.authorized(r) {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	u.render(w, r, http.StatusOK, "login", loginView{})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if u.opts.Token == "" {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	if err := parseForm(w, r); err != nil {
		u.render(w, r, http.StatusBadRequest, "login", loginView{Problem: err.Error()})
		return
	}
	got := r.PostForm.Get("token")
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(u.opts.Token)) != 1 {
		if held, ok := u.refused.Pass(u.opts.Clock.Now()); ok {
			u.log.Warn("dashboard login refused: wrong token", zap.String("remote", r.RemoteAddr), zap.Int("held_back", held))
		}
		u.render(w, r, http.StatusUnauthorized, "login", loginView{Problem: "That is not the admin token."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: u.session, Path: cookiePath, MaxAge: int(sessionAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	u.log.Info("dashboard login", zap.String("remote", r.RemoteAddr))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Path: cookiePath, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// parseForm reads a POSTed form of at most maxForm bytes.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("the form could not be read (at most %d bytes)", maxForm)
	}
	return nil
}

// setFlash leaves msg for the next page the browser shows.
func setFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(clip(msg))), Path: cookiePath, MaxAge: 60,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// takeFlash returns the message a POST left, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: cookiePath, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	return strings.ToValidUTF8(string(b), "")
}

// threadPath is a thread's page. Each half is escaped on its own: a user
// id may hold "/" or "%", and the routes split on the escaped path.
func threadPath(k state.ThreadKey) string {
	return "/ui/threads/" + url.PathEscape(k.Page) + "/" + url.PathEscape(k.User)
}

// clip shortens a value from outside before it goes into a message or a
// log line.
func clip(s string) string {
	const most = 200
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "..."
}
