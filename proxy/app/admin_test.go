package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// The admin API, end to end: a real Baton between the sandbox platform,
// the fake bot and the agent app, asked over its admin listener.

const adminToken = "admin-token-for-tests"

// adminHarness is a harness whose admin API wants adminToken.
func adminHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	o.adminConfig += "  token: " + adminToken + "\n"
	return newHarness(t, o)
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", a.status, a.body, err)
	}
}

// errorText is the "error" of a JSON error answer.
func (a answer) errorText(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	a.decode(t, &e)
	if e.Error == "" {
		t.Fatalf("answer %d %q has no error", a.status, a.body)
	}
	return e.Error
}

// call asks Baton's admin API with the right token.
func (h *harness) call(method, path, body string) answer {
	h.t.Helper()
	return h.callWith(adminToken, method, path, body)
}

// callWith asks with token ("": no Authorization header).
func (h *harness) callWith(token, method, path, body string) answer {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx(), method, h.baton.AdminURL()+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func wantStatus(t testing.TB, a answer, status int, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d %s; want %d", what, a.status, a.body, status)
	}
	if ct := a.header.Get("Content-Type"); status != http.StatusOK && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: content type %q; errors are JSON", what, ct)
	}
}

// Every endpoint but the health checks refuses a request without the
// token, or with a wrong one, before it does anything.
func TestAdminRefusesWithoutTheToken(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9001"
	h.toBot(u, "hello")
	thread := "/api/v1/threads/" + page + "/" + u
	for _, ep := range []struct{ method, path, body string }{
		{"GET", "/metrics", ""},
		{"GET", "/api/v1/build", ""},
		{"GET", "/api/v1/threads", ""},
		{"GET", thread, ""},
		{"POST", thread + "/take", `{}`},
		{"POST", thread + "/pass", `{"to":"helpdesk"}`},
		{"POST", thread + "/release", `{}`},
		{"GET", "/api/v1/dead-letters", ""},
		{"POST", "/api/v1/dead-letters/replay", `{"all":true}`},
		{"POST", "/api/v1/dead-letters/discard", `{"all":true}`},
		{"POST", "/api/v1/reload", ""},
		{"GET", "/api/v1/backup", ""},
		{"GET", "/api/v1/no-such-thing", ""}, // no route is told to a stranger either
	} {
		for _, token := range []string{"", "wrong-token", adminToken + "x", strings.ToUpper(adminToken)} {
			a := h.callWith(token, ep.method, ep.path, ep.body)
			what := fmt.Sprintf("%s %s with token %q", ep.method, ep.path, token)
			wantStatus(t, a, http.StatusUnauthorized, what)
			if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q", what, got)
			}
		}
		// A basic or bare header is no bearer token.
		req, _ := http.NewRequest(ep.method, h.baton.AdminURL()+ep.path, strings.NewReader(ep.body))
		req.Header.Set("Authorization", adminToken)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with the token but no Bearer: %v %v", ep.method, ep.path, resp.StatusCode, err)
		} else {
			resp.Body.Close()
		}
	}
	// None of the refused operations happened.
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner after refused operations = %q; want the bot", got)
	}
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		wantStatus(t, h.callWith("", "GET", path, ""), http.StatusOK, path+" without a token")
	}
}

func TestAdminHealthAndReadiness(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{extraConfig: "reload:\n  watch: false\n"})
	var healthy struct{ Status string }
	a := h.call("GET", "/-/healthy", "")
	wantStatus(t, a, http.StatusOK, "healthy")
	if a.decode(t, &healthy); healthy.Status != "ok" {
		t.Errorf("healthy: %s", a.body)
	}
	ready := h.ready(http.StatusOK)
	if !ready.Ready || !slices.Equal(ready.names(), []string{"store", "policies", "page:" + page, "draining"}) {
		t.Errorf("ready: %+v", ready)
	}
	wantStatus(t, h.call("POST", "/-/ready", ""), http.StatusMethodNotAllowed, "POST /-/ready")

	// A failed reload keeps the old policies running and makes Baton not
	// ready until a good one.
	h.writePolicy("version: 1\nrules:\n  - name: x\n    do: [{pas: {to: helpdesk}}]\n")
	if err := h.baton.Reload(); err == nil {
		t.Fatal("a bad policy reloaded")
	}
	ready = h.ready(http.StatusServiceUnavailable)
	if c := ready.check("policies"); ready.Ready || c.OK || !strings.Contains(c.Error, "policy.yaml:4") {
		t.Errorf("after a failed reload: %+v", ready)
	}
	if c := ready.check("store"); !c.OK {
		t.Errorf("the store check failed with the policies: %+v", c)
	}
	h.writePolicy(operatorPolicy)
	if err := h.baton.Reload(); err != nil {
		t.Fatal(err)
	}
	h.ready(http.StatusOK)
}

// Below the free-disk watermark the store takes no webhooks: not ready.
func TestAdminNotReadyBelowTheDiskWatermark(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	h.baton.Close()
	a, err := app.New(app.Options{Config: h.cfg, FreeSpace: func(string) (uint64, error) { return 100 << 20, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	h.baton = a
	ready := h.ready(http.StatusServiceUnavailable)
	if c := ready.check("store"); c.OK || !strings.Contains(c.Error, "watermark") {
		t.Errorf("store check %+v; want the watermark", c)
	}
}

// A page whose token the Graph API rejected fails its check.
func TestAdminNotReadyWhileAPageTokenIsRejected(t *testing.T) {
	t.Parallel()
	h, faults := twoPageHarness(t)
	faults.RejectToken(rejectedPage, 0)
	h.p.UserText(rejectedPage, "8201", "agent please")
	h.waitMetric(fmt.Sprintf(`baton_graph_page_healthy{page=%q} 0`, rejectedPage))
	ready := h.ready(http.StatusServiceUnavailable)
	if c := ready.check("page:" + rejectedPage); c.OK || c.Error == "" {
		t.Errorf("rejected page's check %+v", c)
	}
	if c := ready.check("page:" + page); !c.OK {
		t.Errorf("healthy page's check %+v", c)
	}
}

type readiness struct {
	Ready  bool `json:"ready"`
	Checks []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"checks"`
}

func (r readiness) names() []string {
	var out []string
	for _, c := range r.Checks {
		out = append(out, c.Name)
	}
	return out
}

func (r readiness) check(name string) (c struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return c
}

func (h *harness) ready(status int) readiness {
	h.t.Helper()
	a := h.callWith("", "GET", "/-/ready", "")
	if a.status != status {
		h.t.Fatalf("ready: %d %s; want %d", a.status, a.body, status)
	}
	var r readiness
	a.decode(h.t, &r)
	return r
}

func (h *harness) writePolicy(src string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "policy.yaml"), []byte(src), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// Metrics are served on the admin listener only; the webhook listener
// keeps its liveness check.
func TestAdminMetricsAndBuild(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	a := h.call("GET", "/metrics", "")
	info := buildinfo.Get()
	wantLine := fmt.Sprintf(`baton_build_info{commit=%q,go=%q,version=%q} 1`, info.Commit, info.Go, info.Version)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), "baton_policy_last_reload_successful 1\n") ||
		!strings.Contains(string(a.body), wantLine+"\n") {
		t.Errorf("admin /metrics: %d, lacks the reload gauge or %s", a.status, wantLine)
	}
	webhookBase := strings.TrimSuffix(h.baton.WebhookURL(), h.cfg.Webhook.Path)
	if status, _ := getURL(t, webhookBase+"/metrics"); status != http.StatusNotFound {
		t.Errorf("webhook listener /metrics: %d; want 404", status)
	}
	if status, body := getURL(t, webhookBase+"/healthz"); status != http.StatusOK || body != "ok" {
		t.Errorf("webhook listener /healthz: %d %q", status, body)
	}

	a = h.call("GET", "/api/v1/build", "")
	wantStatus(t, a, http.StatusOK, "build")
	var got buildinfo.Info
	if a.decode(t, &got); got != info || got.Version == "" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("build %+v; want %+v", got, info)
	}
	a = h.call("DELETE", "/api/v1/build", "")
	wantStatus(t, a, http.StatusMethodNotAllowed, "DELETE build")
	if a.header.Get("Allow") != "GET" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}
	wantStatus(t, h.call("GET", "/api/v2/build", ""), http.StatusNotFound, "an unknown route")
}

func (h *harness) threads(query string) admin.ThreadListView {
	h.t.Helper()
	a := h.call("GET", "/api/v1/threads?"+query, "")
	wantStatus(h.t, a, http.StatusOK, "threads?"+query)
	var l admin.ThreadListView
	a.decode(h.t, &l)
	return l
}

func users(l admin.ThreadListView) string {
	var out []string
	for _, t := range l.Threads {
		out = append(out, t.User+"="+t.Owner)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestAdminListsThreads(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const chat, helped, quiet = "9101", "9102", "9103"
	for _, u := range []string{quiet, chat} {
		h.toBot(u, "hello")
	}
	h.handOverRecorded(helped)

	all := h.threads("")
	if got, want := users(all), fmt.Sprintf("%s=bot %s=app:%s %s=bot", chat, helped, agentApp, quiet); got != want || all.NextCursor != "" {
		t.Fatalf("threads: %s (cursor %q); want %s", got, all.NextCursor, want)
	}
	for _, th := range all.Threads {
		if th.Page != page || th.LastUser.IsZero() || th.Since.IsZero() || th.Tags == nil {
			t.Errorf("thread %+v", th)
		}
		if th.User == helped && (th.OwnerName != "helpdesk" || th.Reason.Rule != "talk-to-human") {
			t.Errorf("handed-over thread %+v; want owner_name helpdesk, rule talk-to-human", th)
		}
	}
	for query, want := range map[string]string{
		"owner=helpdesk":                     helped + "=app:" + agentApp,
		"owner=app:" + agentApp:              helped + "=app:" + agentApp,
		"owner=other&page=" + page:           helped + "=app:" + agentApp,
		"owner=bot":                          chat + "=bot " + quiet + "=bot",
		"owner=idle":                         "",
		"page=1":                             "",
		"dead_letters=true":                  "",
		"idle_since=2000-01-01T00:00:00Z":    "",
		"idle_since=" + url.QueryEscape("-"): "bad",
	} {
		if want == "bad" {
			continue // refusals are below
		}
		if got := users(h.threads(query)); got != want {
			t.Errorf("threads?%s: %s; want %s", query, got, want)
		}
	}
	if got := users(h.threads("idle_since=1ms")); got != users(all) {
		t.Errorf("idle for a millisecond: %s", got)
	}

	// One at a time: each thread once, then an empty cursor.
	var paged []string
	cursor := ""
	for range 10 {
		l := h.threads("limit=1&cursor=" + url.QueryEscape(cursor))
		for _, th := range l.Threads {
			paged = append(paged, th.User)
		}
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	if len(paged) != 3 || paged[0] == paged[1] || paged[1] == paged[2] {
		t.Errorf("paged through %q", paged)
	}

	for query, want := range map[string]string{
		"owner=nobody":       `owner: unknown "nobody"`,
		"limit=0":            "limit:",
		"idle_since=soon":    "idle_since:",
		"cursor=%21%21":      "cursor:",
		"cursor=AAAA":        "cursor:",
		"colour=blue":        `unknown parameter "colour"`,
		"dead_letters=maybe": "dead_letters:",
	} {
		a := h.call("GET", "/api/v1/threads?"+query, "")
		wantStatus(t, a, http.StatusBadRequest, query)
		if got := a.errorText(t); !strings.Contains(got, want) {
			t.Errorf("threads?%s: %q; want %q", query, got, want)
		}
	}
}

func (h *harness) detail(user string) admin.DetailView {
	h.t.Helper()
	a := h.call("GET", "/api/v1/threads/"+page+"/"+user, "")
	wantStatus(h.t, a, http.StatusOK, "thread "+user)
	var d admin.DetailView
	a.decode(h.t, &d)
	return d
}

func TestAdminShowsAThread(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9201"
	h.handOverRecorded(u)

	d := h.detail(u)
	if d.Thread.Owner != "app:"+agentApp || d.Thread.OwnerName != "helpdesk" || d.Thread.User != u {
		t.Errorf("thread %+v", d.Thread)
	}
	var kinds []string
	for _, c := range d.History {
		kinds = append(kinds, c.Kind)
		if c.Kind == "owner" && c.To.Kind == state.OwnerApp && (c.To.AppID != agentApp || c.Reason.Rule != "talk-to-human") {
			t.Errorf("handover change %+v", c)
		}
	}
	if !slices.Contains(kinds, "owner") {
		t.Errorf("history kinds %q lack the owner change", kinds)
	}
	if d.Timers == nil || d.DeadLetters == nil || d.Queued != d.Thread.Queued || d.PendingDeliveries > d.Queued {
		t.Errorf("detail %s", h.call("GET", "/api/v1/threads/"+page+"/"+u, "").body)
	}

	for path, status := range map[string]int{
		"/api/v1/threads/" + page + "/9299":       http.StatusNotFound, // never seen
		"/api/v1/threads/not-a-page/" + u:         http.StatusBadRequest,
		"/api/v1/threads/" + page + "/" + u + "/": http.StatusNotFound,
	} {
		wantStatus(t, h.call("GET", path, ""), status, path)
	}
	wantStatus(t, h.call("POST", "/api/v1/threads/"+page+"/"+u, "{}"), http.StatusMethodNotAllowed, "POST thread")
}

// An operator's take, pass and release reach the platform in the
// thread's order, and the history says an operator did them.
func TestAdminOperatorTakesPassesAndReleases(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9301"
	thread := "/api/v1/threads/" + page + "/" + u
	wantStatus(t, h.call("POST", thread+"/take", `{"reason":"never seen"}`), http.StatusNotFound, "take of an unknown thread")

	h.toBot(u, "hello")

	a := h.call("POST", thread+"/pass", `{"to":"helpdesk","reason":"vip customer"}`)
	wantStatus(t, a, http.StatusAccepted, "pass")
	var accepted struct{ Accepted bool }
	if a.decode(t, &accepted); !accepted.Accepted {
		t.Errorf("pass answered %s", a.body)
	}
	h.waitKind(h.agent, u, "pass_thread_control")
	h.untilOwner(u, agentApp)

	// Operations queued back to back all run, in order.
	wantStatus(t, h.call("POST", thread+"/take", `{"reason":"agent is away"}`), http.StatusAccepted, "take")
	wantStatus(t, h.call("POST", thread+"/release", ""), http.StatusAccepted, "release")
	h.untilOwner(u, "")
	h.until(func() bool { return h.thread(u).Owner.Kind == state.OwnerIdle },
		func() string { return fmt.Sprintf("Baton's owner after release: %v", h.thread(u).Owner) })

	var ops []string
	for _, c := range h.detail(u).History {
		if c.Reason.Actor == "operator" && c.Kind == "owner" {
			ops = append(ops, c.To.String())
		}
	}
	if want := []string{"app:" + agentApp, "bot", "idle"}; !slices.Equal(ops, want) {
		t.Errorf("owner changes by the operator: %q; want %q", ops, want)
	}

	for _, tt := range []struct {
		path, body string
		status     int
		want       string
	}{
		{thread + "/pass", `{}`, http.StatusBadRequest, "to: required"},
		{thread + "/pass", `{"to":"zendesk"}`, http.StatusBadRequest, `unknown app "zendesk"`},
		{thread + "/take", `{"reason":`, http.StatusBadRequest, "not JSON"},
		{thread + "/take", `{"why":"x"}`, http.StatusBadRequest, "unknown field"},
		{thread + "/steal", `{}`, http.StatusNotFound, "no such endpoint"},
		{"/api/v1/threads/" + page + "/9399/release", `{}`, http.StatusNotFound, "unknown thread"},
		{thread + "/take", strings.Repeat(" ", 70<<10) + "{}", http.StatusBadRequest, "larger than"},
	} {
		a := h.call("POST", tt.path, tt.body)
		wantStatus(t, a, tt.status, tt.path+" "+tt.body[:min(len(tt.body), 20)])
		if got := a.errorText(t); !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q; want %q", tt.path, got, tt.want)
		}
	}
	wantStatus(t, h.call("GET", thread+"/take", ""), http.StatusMethodNotAllowed, "GET take")
}

func (h *harness) untilOwner(user, app string) {
	h.t.Helper()
	h.until(func() bool { return h.p.Owner(page, user) == app },
		func() string { return fmt.Sprintf("owner of %s is %q; want %q", user, h.p.Owner(page, user), app) })
}

// Dead letters set aside while the bot refused events are listed,
// replayed to the bot once it takes them, or discarded, while Baton runs.
func TestAdminDeadLetters(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u1, u2 = "9401", "9402"
	h.bot.SetFailing(http.StatusBadRequest)
	h.p.UserText(page, u1, "first")
	h.p.UserText(page, u2, "second")
	h.p.UserText(page, u2, "third")
	list := func(query string) []admin.DeadLetterView {
		a := h.call("GET", "/api/v1/dead-letters"+query, "")
		wantStatus(t, a, http.StatusOK, "dead letters"+query)
		var l struct {
			DeadLetters []admin.DeadLetterView `json:"dead_letters"`
		}
		a.decode(t, &l)
		return l.DeadLetters
	}
	h.until(func() bool { return len(list("")) == 3 }, func() string { return fmt.Sprintf("dead letters: %+v", list("")) })
	h.bot.SetFailing(0)

	dead := list("?thread=" + page + "/" + u2)
	if len(dead) != 2 || dead[0].User != u2 || dead[0].Seq >= dead[1].Seq {
		t.Fatalf("u2's dead letters: %+v", dead)
	}
	for _, d := range dead {
		if d.Page != page || d.Reason == "" || d.At.IsZero() || d.Enqueued.IsZero() || d.DeliveryID == "" || !slices.Equal(d.Kinds, []string{"message"}) {
			t.Errorf("dead letter %+v", d)
		}
	}
	if got := h.threads("dead_letters=true"); users(got) != fmt.Sprintf("%s=bot %s=bot", u1, u2) || got.Threads[0].DeadLetters == 0 {
		t.Errorf("threads with dead letters: %s", users(got))
	}
	if d := h.detail(u2); len(d.DeadLetters) != 2 || d.Thread.DeadLetters != 2 {
		t.Errorf("u2's detail: %+v", d)
	}

	// One of u2's back to the bot, the other away.
	a := h.call("POST", "/api/v1/dead-letters/replay", fmt.Sprintf(`{"thread":"%s/%s","seq":%d}`, page, u2, dead[1].Seq))
	wantStatus(t, a, http.StatusOK, "replay one")
	var done struct {
		Done []admin.DeadLetterView `json:"done"`
	}
	if a.decode(t, &done); len(done.Done) != 1 || done.Done[0].Seq != dead[1].Seq {
		t.Errorf("replayed %s", a.body)
	}
	h.waitText(h.bot, u2, "third")
	a = h.call("POST", "/api/v1/dead-letters/discard", fmt.Sprintf(`{"thread":"%s/%s"}`, page, u2))
	if wantStatus(t, a, http.StatusOK, "discard"); !bytes.Contains(a.body, []byte(fmt.Sprintf(`"seq":%d`, dead[0].Seq))) {
		t.Errorf("discarded %s", a.body)
	}
	// Then everything left.
	a = h.call("POST", "/api/v1/dead-letters/replay", `{"all":true}`)
	if wantStatus(t, a, http.StatusOK, "replay all"); !bytes.Contains(a.body, []byte(`"user":"`+u1+`"`)) {
		t.Errorf("replayed all: %s", a.body)
	}
	h.waitText(h.bot, u1, "first")
	if left := list(""); len(left) != 0 {
		t.Errorf("left: %+v", left)
	}
	if got := texts(h.bot, u2); !slices.Equal(got, []string{"third"}) {
		t.Errorf("the bot got %q from u2; want the replayed one only", got)
	}
	var kinds []string
	for _, c := range h.detail(u2).History {
		if strings.HasPrefix(c.Kind, "dead_letter") {
			kinds = append(kinds, c.Kind+"/"+c.Reason.Actor)
		}
	}
	if want := []string{"dead_letter/bot", "dead_letter/bot", "dead_letter_replayed/operator", "dead_letter_discarded/operator"}; !slices.Equal(kinds, want) {
		t.Errorf("u2's dead-letter history %q; want %q", kinds, want)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/v1/dead-letters/replay", `{}`, http.StatusBadRequest},
		{"POST", "/api/v1/dead-letters/replay", `{"all":true,"thread":"1/2"}`, http.StatusBadRequest},
		{"POST", "/api/v1/dead-letters/discard", `{"thread":"` + page + `"}`, http.StatusBadRequest},
		{"POST", "/api/v1/dead-letters/discard", fmt.Sprintf(`{"thread":"%s/%s","seq":%d}`, page, u2, dead[0].Seq), http.StatusNotFound},
		{"POST", "/api/v1/dead-letters/resurrect", `{"all":true}`, http.StatusNotFound},
		{"GET", "/api/v1/dead-letters?thread=nope", "", http.StatusBadRequest},
		{"GET", "/api/v1/dead-letters?user=1", "", http.StatusBadRequest},
		{"GET", "/api/v1/dead-letters/replay", "", http.StatusMethodNotAllowed},
	} {
		a := h.call(tt.method, tt.path, tt.body)
		wantStatus(t, a, tt.status, tt.method+" "+tt.path+" "+tt.body)
		a.errorText(t)
	}
	// Nothing to do is not an error.
	a = h.call("POST", "/api/v1/dead-letters/discard", `{"all":true}`)
	if wantStatus(t, a, http.StatusOK, "discard all of none"); !bytes.Contains(a.body, []byte(`"done":[]`)) {
		t.Errorf("discard of none: %s", a.body)
	}
}

func TestAdminReload(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{extraConfig: "reload:\n  watch: false\n"})
	a := h.call("POST", "/api/v1/reload", "")
	wantStatus(t, a, http.StatusOK, "reload")
	var ok struct {
		OK    bool `json:"ok"`
		Rules int  `json:"rules"`
	}
	if a.decode(t, &ok); !ok.OK || ok.Rules != h.policySet().Rules() {
		t.Errorf("reload: %s", a.body)
	}

	h.writePolicy("version: 1\nrules:\n  - name: a\n    when: {keywords: [x]}\n    do: [{pas: {to: helpdesk}}]\n  - name: a\n    when: {keywords: [y]}\n    do: [{take: {}}]\n")
	a = h.call("POST", "/api/v1/reload", "")
	wantStatus(t, a, http.StatusUnprocessableEntity, "bad reload")
	var bad struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	a.decode(t, &bad)
	if bad.Error == "" || len(bad.Problems) < 2 {
		t.Fatalf("bad reload: %s", a.body)
	}
	policy := filepath.Join(h.dir, "policy.yaml")
	for _, p := range bad.Problems {
		if rest, ok := strings.CutPrefix(p, policy+":"); !ok || !strings.Contains(rest, ":") {
			t.Errorf("problem %q is not file:line:col: msg", p)
		}
	}
	// The running rules stayed: the demo policy still hands over.
	const u = "9501"
	h.p.UserText(page, u, "talk to a human")
	h.waitKind(h.agent, u, "pass_thread_control")
	wantStatus(t, h.call("GET", "/api/v1/reload", ""), http.StatusMethodNotAllowed, "GET reload")
}

// A backup of a running Baton restores, offline, into a store with the
// same threads.
func TestAdminBackup(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9601"
	h.handOverRecorded(u)

	a := h.call("GET", "/api/v1/backup", "")
	wantStatus(t, a, http.StatusOK, "backup")
	if ct := a.header.Get("Content-Type"); ct != "application/octet-stream" || len(a.body) == 0 {
		t.Fatalf("backup: %q, %d bytes", ct, len(a.body))
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := badgerstore.Restore(dir, bytes.NewReader(a.body)); err != nil {
		t.Fatal(err)
	}
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	th, err := s.Thread(context.Background(), state.ThreadKey{Page: page, User: u})
	if err != nil || th.Owner != (state.Owner{Kind: state.OwnerApp, AppID: agentApp}) {
		t.Errorf("restored thread %+v, %v", th, err)
	}
	if err := badgerstore.Restore(dir, bytes.NewReader(a.body)); err == nil {
		t.Error("a restore over a store was allowed")
	}
	wantStatus(t, h.call("POST", "/api/v1/backup", ""), http.StatusMethodNotAllowed, "POST backup")
}

// Without a token (loopback only), nothing asks for one.
func TestAdminWithoutATokenOnLoopback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	if a := h.callWith("", "GET", "/api/v1/threads", ""); a.status != http.StatusOK {
		t.Errorf("threads without a token: %d %s", a.status, a.body)
	}
}

// An address in use fails the start before the store is opened: the data
// directory is not even created.
func TestAdminAddressInUseFailsFirst(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	h.baton.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, which := range []string{"admin", "webhook"} {
		cfg := *h.cfg
		cfg.DataDir = filepath.Join(t.TempDir(), "never-opened")
		if which == "admin" {
			cfg.Admin.Listen = taken.Addr().String()
		} else {
			cfg.Listen = taken.Addr().String()
		}
		_, err := app.New(app.Options{Config: &cfg})
		if err == nil || !strings.Contains(err.Error(), which+" listener: listen on "+taken.Addr().String()) {
			t.Errorf("%s address in use: %v", which, err)
		}
		if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
			t.Errorf("%s address in use: the store was opened (%v)", which, err)
		}
	}
}

// While Baton stops, and a webhook still holds its listener, readiness
// fails with the draining check and operations are refused.
func TestAdminDrainingWhileStopping(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9701"
	h.toBot(u, "hello")
	h.ready(http.StatusOK)

	// A webhook whose body never comes keeps the webhook listener's
	// shutdown waiting (up to shutdown_timeout), and the admin listener up.
	conn, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(h.baton.WebhookURL(), h.cfg.Webhook.Path), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST "+h.cfg.Webhook.Path+" HTTP/1.1\r\nHost: baton\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"object\""); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- h.baton.Close() }()

	var r readiness
	h.until(func() bool {
		a := h.callWith("", "GET", "/-/ready", "")
		if a.status != http.StatusServiceUnavailable {
			return false
		}
		a.decode(t, &r)
		return true
	}, func() string { return "readiness never failed while stopping" })
	if c := r.check("draining"); r.Ready || c.OK || !strings.Contains(c.Error, "stopping") {
		t.Errorf("while stopping: %+v", r)
	}
	a := h.call("POST", "/api/v1/threads/"+page+"/"+u+"/take", "")
	wantStatus(t, a, http.StatusServiceUnavailable, "take while stopping")
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner %q after a refused take", got)
	}
	conn.Close()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Baton never stopped")
	}
	if _, err := http.Get(h.baton.AdminURL() + "/-/healthy"); err == nil {
		t.Error("the admin listener still answers after Close")
	}
}
