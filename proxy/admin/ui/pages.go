package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies/yamlfile"
	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/state"
)

// How much the overview shows.
const (
	// withPeopleMost bounds the threads listed as with people; the
	// oldest of those read are shown first.
	withPeopleMost = 500
	// withPeoplePages bounds the store's pages one overview reads: the
	// store has no index by owner, a page looks at up to 50,000 threads,
	// and the overview reloads every 10 seconds.
	withPeoplePages = 2
	recentMost      = 50
	deadThreadMost  = 100
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "overview", "thread", "error"}

func (u *UI) parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"owner":     u.ownerName,
		"when":      when,
		"since":     func(t time.Time) string { return span(u.opts.Clock.Now().Sub(t)) },
		"until":     func(t time.Time) string { return span(t.Sub(u.opts.Clock.Now())) },
		"span":      span,
		"threadURL": threadPath,
		"cause": func(c string) string {
			if c == "" {
				return "platform"
			}
			return c
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("ui: templates: %w", err)
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := layout.Clone()
		if err == nil {
			t, err = t.ParseFS(files, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// frame is what every page shows around its content.
type frame struct {
	Title   string
	Flash   string
	Refresh bool           // reload the page every 10 s
	Logout  bool           // signed in with a cookie: offer to sign out
	Build   buildinfo.Info // empty before signing in
	Content any
}

// render writes page with data inside the layout. It renders into a
// buffer first, so a template error still gets an error status.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	f := frame{Content: data, Logout: u.opts.Token != ""}
	if u.authorized(r) {
		f.Build = buildinfo.Get() // the API tells it only with the token too
	}
	switch v := data.(type) {
	case overviewView:
		f.Title, f.Flash, f.Refresh = "Baton", v.Flash, true
	case threadView:
		f.Title, f.Flash = "Thread "+v.Key.String(), v.Flash
	case loginView:
		f.Title, f.Logout = "Sign in", false
	case errorView:
		f.Title = http.StatusText(v.Status)
	}
	var b bytes.Buffer
	if err := u.pages[page].ExecuteTemplate(&b, "layout.html", f); err != nil {
		u.log.Error("dashboard page not rendered", zap.String("page", page), zap.Error(err))
		http.Error(w, "page not rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}

type errorView struct {
	Status  int
	Message string
}

func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	u.render(w, r, status, "error", errorView{Status: status, Message: msg})
}

// fail answers a Backend's error with a page and a status as the API
// would choose them.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		u.log.Error("dashboard request failed", zap.String("path", clip(r.URL.Path)), zap.Int("status", status), zap.Error(err))
	}
	u.errorPage(w, r, status, err.Error())
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, admin.ErrUnknownThread):
		return http.StatusNotFound
	case errors.Is(err, admin.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, admin.ErrUnavailable), errors.Is(err, state.ErrClosed), errors.Is(err, state.ErrStorageFailed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type loginView struct{ Problem string }

// overviewView is the dashboard's first page.
type overviewView struct {
	Flash          string
	WithPeople     []state.ThreadSummary // oldest handover first
	WithPeopleMore bool                  // more threads are with people than were read
	Handovers      []admin.Handover
	DeadLetters    []deadThread
	DeadTotal      int
	Policy         policyView
	Figures        admin.Figures
	HandoversTotal uint64
}

type deadThread struct {
	Thread state.ThreadKey
	Count  int
	Oldest time.Time
}

type policyView struct {
	Rules    int
	LoadedAt time.Time
	Failed   bool
	Problems []string
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request) {
	b := u.opts.Backend
	v := overviewView{Flash: takeFlash(w, r), Handovers: b.RecentHandovers(recentMost), Figures: b.Figures()}
	var err error
	if v.WithPeople, v.WithPeopleMore, err = u.withPeople(r.Context()); err != nil {
		u.fail(w, r, err)
		return
	}
	dead, err := b.DeadLetters(r.Context(), nil)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	v.DeadTotal = len(dead)
	for _, d := range dead {
		// Listed by thread, so one thread's letters are next to each other.
		if n := len(v.DeadLetters); n > 0 && v.DeadLetters[n-1].Thread == d.Thread {
			last := &v.DeadLetters[n-1]
			last.Count++
			if !d.At.IsZero() && (last.Oldest.IsZero() || d.At.Before(last.Oldest)) {
				last.Oldest = d.At
			}
			continue
		}
		if len(v.DeadLetters) == deadThreadMost {
			continue
		}
		v.DeadLetters = append(v.DeadLetters, deadThread{Thread: d.Thread, Count: 1, Oldest: d.At})
	}
	ps := b.PolicyStatus()
	v.Policy = policyView{Rules: ps.Rules, LoadedAt: ps.LoadedAt, Failed: ps.Err != nil, Problems: problems(ps.Err)}
	for _, n := range v.Figures.Handovers {
		v.HandoversTotal += n
	}
	u.render(w, r, http.StatusOK, "overview", v)
}

// withPeople lists the threads another app owns, the longest held first.
func (u *UI) withPeople(ctx context.Context) ([]state.ThreadSummary, bool, error) {
	f := state.ThreadFilter{Owner: &state.Owner{Kind: state.OwnerApp}}
	var out []state.ThreadSummary
	cursor := ""
	for range withPeoplePages {
		list, next, err := u.opts.Backend.ListThreads(ctx, f, cursor, admin.MaxLimit)
		if err != nil {
			return nil, false, err
		}
		out = append(out, list...)
		if cursor = next; cursor == "" || len(out) >= withPeopleMost {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b state.ThreadSummary) int { return a.Thread.Since.Compare(b.Thread.Since) })
	more := cursor != "" || len(out) > withPeopleMost
	return out[:min(len(out), withPeopleMost)], more, nil
}

// problems splits a reload's error into lines, one per problem.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var probs yamlfile.Problems
	if !errors.As(err, &probs) {
		return []string{err.Error()}
	}
	sorted := append(yamlfile.Problems(nil), probs...)
	sorted.Sort()
	out := make([]string, 0, len(sorted))
	for _, p := range sorted {
		out = append(out, p.String())
	}
	return out
}

// threadView is one thread's page.
type threadView struct {
	Flash       string
	Key         state.ThreadKey
	Thread      state.Thread
	Queued      int
	Pending     int
	Timers      []state.Timer    // soonest first
	History     []state.Change   // newest first
	DeadLetters []deadLetterView // in the thread's order
}

type deadLetterView struct {
	Seq      uint64
	Reason   string
	At       time.Time
	Enqueued time.Time
	Kinds    string
}

func (u *UI) thread(w http.ResponseWriter, r *http.Request) {
	k, err := threadKey(r)
	if err != nil {
		u.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	d, err := u.opts.Backend.Thread(r.Context(), k)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	v := threadView{
		Flash: takeFlash(w, r), Key: k, Thread: d.Summary.Thread, Queued: d.Summary.Queued, Pending: d.Pending,
		Timers: slices.Clone(d.Timers), History: slices.Clone(d.History),
	}
	slices.SortFunc(v.Timers, func(a, b state.Timer) int { return a.Due.Compare(b.Due) })
	slices.Reverse(v.History)
	for _, dl := range d.DeadLetters {
		kinds := make([]string, 0, len(dl.Records))
		for _, rec := range dl.Records {
			kinds = append(kinds, admin.EventKind(rec))
		}
		v.DeadLetters = append(v.DeadLetters, deadLetterView{Seq: dl.Seq, Reason: dl.Reason, At: dl.At, Enqueued: dl.Enqueued, Kinds: strings.Join(kinds, ", ")})
	}
	u.render(w, r, http.StatusOK, "thread", v)
}

// threadForm reads a thread's POST: the thread from the path and the
// form from the body. When either is bad it answers 400 itself and
// returns false.
func (u *UI) threadForm(w http.ResponseWriter, r *http.Request) (state.ThreadKey, bool) {
	k, err := threadKey(r)
	if err == nil {
		err = parseForm(w, r)
	}
	if err != nil {
		u.errorPage(w, r, http.StatusBadRequest, err.Error())
		return state.ThreadKey{}, false
	}
	return k, true
}

func (u *UI) take(w http.ResponseWriter, r *http.Request) {
	k, ok := u.threadForm(w, r)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > maxReason {
		setFlash(w, r, fmt.Sprintf("Not taken back: the reason is longer than %d bytes.", maxReason))
		http.Redirect(w, r, threadPath(k), http.StatusSeeOther)
		return
	}
	err := u.opts.Backend.Operate(r.Context(), k, admin.Operation{Kind: "take", Reason: reason})
	switch {
	case errors.Is(err, admin.ErrUnknownThread):
		u.fail(w, r, err)
		return
	case err != nil:
		if statusOf(err) >= 500 {
			u.log.Error("dashboard take failed", logkeys.Thread(k), zap.Error(err))
		}
		setFlash(w, r, "Not taken back: "+err.Error())
	default:
		u.log.Info("operator operation queued from the dashboard", zap.String("op", "take"), logkeys.Thread(k))
		setFlash(w, r, "Take back queued: it runs in the thread's order, and the timeline shows it once done.")
	}
	http.Redirect(w, r, threadPath(k), http.StatusSeeOther)
}

func (u *UI) replay(w http.ResponseWriter, r *http.Request) {
	k, ok := u.threadForm(w, r)
	if !ok {
		return
	}
	var seq uint64 // 0: all of the thread's
	if s := r.PostForm.Get("seq"); s != "" {
		var err error
		if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
			u.errorPage(w, r, http.StatusBadRequest, "seq: want a number")
			return
		}
	}
	done, err := u.opts.Backend.ReplayDeadLetters(r.Context(), k, seq)
	switch {
	case err != nil:
		if statusOf(err) >= 500 {
			u.log.Error("dashboard replay failed", logkeys.Thread(k), zap.Int("done", len(done)), zap.Error(err))
		}
		setFlash(w, r, fmt.Sprintf("Replayed %s, then: %v", deadLetters(len(done)), err))
	case len(done) == 0 && seq != 0:
		setFlash(w, r, fmt.Sprintf("No dead letter #%d to replay.", seq))
	default:
		u.log.Info("dead letters replayed from the dashboard", logkeys.Thread(k), zap.Int("items", len(done)))
		setFlash(w, r, fmt.Sprintf("Replayed %s: back in the thread's queue, delivered in its order.", deadLetters(len(done))))
	}
	http.Redirect(w, r, threadPath(k), http.StatusSeeOther)
}

// deadLetters counts dead letters in words: "1 dead letter", "2 dead
// letters".
func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}

var digitsRE = regexp.MustCompile(`^[0-9]{1,32}$`)

// threadKey reads the thread from the path, with the API's checks.
func threadKey(r *http.Request) (state.ThreadKey, error) {
	page, user := r.PathValue("page"), r.PathValue("user")
	if !digitsRE.MatchString(page) {
		return state.ThreadKey{}, fmt.Errorf("the page must be a page id (digits), got %q", clip(page))
	}
	if user == "" || len(user) > 256 {
		return state.ThreadKey{}, fmt.Errorf("bad user id %q", clip(user))
	}
	return state.ThreadKey{Page: page, User: user}, nil
}

// ownerName shows an owner with the config's name for its app.
func (u *UI) ownerName(o state.Owner) string {
	switch o.Kind {
	case state.OwnerBot:
		return "bot"
	case state.OwnerIdle:
		return "idle"
	case state.OwnerApp:
		if o.AppID == "" {
			return "another app"
		}
		if name, ok := u.appName[o.AppID]; ok {
			return name
		}
		return "app:" + o.AppID
	}
	return "unknown"
}

// when shows a time in UTC to the second; "-" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// span shows a duration the way people say it: 45s, 2m30s, 12m, 3h05m,
// 2d04h.
func span(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 10*time.Minute && d%time.Minute >= time.Second:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
