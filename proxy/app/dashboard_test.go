package app_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/buildinfo"
)

// The dashboard on the admin listener, over HTTP: signing in, the cookie
// only it accepts, forms refused from other sites, and escaping of what
// users and operators wrote. dashboard_browser_test.go drives it in a
// browser.

// page answers one dashboard request without following redirects.
type pageAnswer struct {
	status int
	header http.Header
	body   string
}

// dashReq is one request to the admin listener: a cookie, headers, and a
// form for a POST.
type dashReq struct {
	method, path string
	form         url.Values
	cookie       *http.Cookie
	header       map[string]string
}

func (h *harness) dash(q dashReq) pageAnswer {
	h.t.Helper()
	if q.method == "" {
		q.method = http.MethodGet
	}
	var body io.Reader
	if q.form != nil {
		body = strings.NewReader(q.form.Encode())
	}
	req, err := http.NewRequestWithContext(h.ctx(), q.method, h.baton.AdminURL()+q.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if q.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if q.cookie != nil {
		req.AddCookie(q.cookie)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the answer: %v", q.method, q.path, err)
	}
	return pageAnswer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// origin is the Origin header a browser sends with a form of the
// dashboard.
func (h *harness) origin() map[string]string {
	return map[string]string{"Origin": h.baton.AdminURL()}
}

func wantPage(t testing.TB, a pageAnswer, status int, location, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d; want %d\n%s", what, a.status, status, a.body)
	}
	if got := a.header.Get("Location"); got != location {
		t.Fatalf("%s: Location %q; want %q", what, got, location)
	}
}

// signIn posts the token to the login form and returns the session cookie.
func (h *harness) signIn() *http.Cookie {
	h.t.Helper()
	a := h.dash(dashReq{method: "POST", path: "/ui/login", form: url.Values{"token": {adminToken}}, header: h.origin()})
	wantPage(h.t, a, http.StatusSeeOther, "/ui/", "sign in")
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "baton_session" {
			return c
		}
	}
	h.t.Fatalf("sign in set no session cookie: %q", a.header.Values("Set-Cookie"))
	return nil
}

func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})

	wantPage(t, h.dash(dashReq{path: "/"}), http.StatusFound, "/ui/", "GET /")
	wantPage(t, h.dash(dashReq{path: "/ui/"}), http.StatusSeeOther, "/ui/login", "overview without a session")
	wantPage(t, h.dash(dashReq{path: "/ui/threads/" + page + "/1"}), http.StatusSeeOther, "/ui/login", "thread without a session")
	login := h.dash(dashReq{path: "/ui/login"})
	wantPage(t, login, http.StatusOK, "", "login form")
	if !strings.Contains(login.body, `name="token"`) || !strings.Contains(login.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("login form: %s\nCSP %q", login.body, login.header.Get("Content-Security-Policy"))
	}
	// The style sheet is no secret: the login form uses it. The files'
	// list is none of a stranger's business, nor is Baton's version.
	if css := h.dash(dashReq{path: "/ui/static/style.css"}); css.status != http.StatusOK || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("style sheet: %d %q", css.status, css.header.Get("Content-Type"))
	}
	if list := h.dash(dashReq{path: "/ui/static/"}); list.status == http.StatusOK || strings.Contains(list.body, "style.css") {
		t.Errorf("the static files are listed: %d\n%s", list.status, list.body)
	}
	if v := buildinfo.Get().Version; strings.Contains(login.body, `class="build">`+v) {
		t.Errorf("the login form shows the version %s", v)
	}

	for _, wrong := range []string{"", "wrong", adminToken + "x", strings.ToUpper(adminToken)} {
		a := h.dash(dashReq{method: "POST", path: "/ui/login", form: url.Values{"token": {wrong}}, header: h.origin()})
		wantPage(t, a, http.StatusUnauthorized, "", "sign in with "+wrong)
		if len(a.header.Values("Set-Cookie")) != 0 || !strings.Contains(a.body, "not the admin token") {
			t.Errorf("sign in with %q: cookies %q, page %s", wrong, a.header.Values("Set-Cookie"), a.body)
		}
	}
	// The login form is a form like any other: from another site, refused.
	for name, hdr := range map[string]map[string]string{
		"no origin":       nil,
		"another origin":  {"Origin": "http://evil.example"},
		"another referer": {"Referer": "http://evil.example/page"},
		"null origin":     {"Origin": "null"},
	} {
		a := h.dash(dashReq{method: "POST", path: "/ui/login", form: url.Values{"token": {adminToken}}, header: hdr})
		wantPage(t, a, http.StatusForbidden, "", "sign in with "+name)
		if len(a.header.Values("Set-Cookie")) != 0 {
			t.Errorf("sign in with %s set %q", name, a.header.Values("Set-Cookie"))
		}
	}

	c := h.signIn()
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" || c.Secure || c.MaxAge <= 0 {
		t.Errorf("session cookie %+v; want HttpOnly, SameSite=Strict, Path=/ui, not Secure over plain HTTP", c)
	}
	if strings.Contains(c.Value, adminToken) {
		t.Errorf("the session cookie holds the token: %q", c.Value)
	}
	a := h.dash(dashReq{path: "/ui/", cookie: c})
	wantPage(t, a, http.StatusOK, "", "overview with the session")
	if !strings.Contains(a.body, "With people now") || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Errorf("overview: %q\n%s", a.header.Get("Content-Type"), a.body)
	}
	if strings.Contains(a.body, adminToken) {
		t.Error("the overview shows the token")
	}
	// The bearer header works too (a script or curl).
	wantPage(t, h.dash(dashReq{path: "/ui/", header: map[string]string{"Authorization": "Bearer " + adminToken}}), http.StatusOK, "", "overview with the bearer token")
	// The cookie is the dashboard's: the API wants the header. A path
	// that only starts as the dashboard's is sent to its clean form,
	// where the API asks for the header, or is one the dashboard lacks.
	for _, path := range []string{"/api/v1/threads", "/metrics", "/ui/../api/v1/threads", "/ui/%2e%2e/metrics"} {
		a := h.dash(dashReq{path: path, cookie: &http.Cookie{Name: c.Name, Value: c.Value}})
		if a.status == http.StatusTemporaryRedirect && !strings.HasPrefix(a.header.Get("Location"), "/ui") {
			a = h.dash(dashReq{path: a.header.Get("Location"), cookie: &http.Cookie{Name: c.Name, Value: c.Value}})
		}
		dashboards404 := a.status == http.StatusNotFound && strings.Contains(a.body, "No such page")
		if a.status != http.StatusUnauthorized && !dashboards404 {
			t.Errorf("GET %s with the dashboard's cookie: %d %s", path, a.status, a.body)
		}
	}

	// Signing out clears the cookie.
	out := h.dash(dashReq{method: "POST", path: "/ui/logout", cookie: c, header: h.origin()})
	wantPage(t, out, http.StatusSeeOther, "/ui/login", "sign out")
	if sc := out.header.Get("Set-Cookie"); !strings.Contains(sc, "baton_session=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("sign out: Set-Cookie %q", sc)
	}
}

// A take or replay from another site, or with no Origin or Referer at
// all, is refused even with the session cookie, and does nothing.
func TestDashboardRefusesFormsFromElsewhere(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = "9601"
	h.p.UserText(page, u, "talk to a human")
	h.waitKind(h.agent, u, "pass_thread_control")
	h.untilOwner(u, agentApp)
	c := h.signIn()
	thread := "/ui/threads/" + page + "/" + u

	for name, hdr := range map[string]map[string]string{
		"no origin":                 nil,
		"another origin":            {"Origin": "http://evil.example"},
		"another port":              {"Origin": "http://127.0.0.1:1"},
		"another referer":           {"Referer": "https://evil.example" + thread},
		"origin wins over referer":  {"Origin": "http://evil.example", "Referer": h.baton.AdminURL() + thread},
		"a referer that is no URL":  {"Referer": "::"},
		"a scheme that is not http": {"Origin": "file://" + strings.TrimPrefix(h.baton.AdminURL(), "http://")},
	} {
		for _, op := range []string{"/take", "/replay"} {
			a := h.dash(dashReq{method: "POST", path: thread + op, form: url.Values{"reason": {"csrf"}}, cookie: c, header: hdr})
			wantPage(t, a, http.StatusForbidden, "", op+" with "+name)
		}
	}
	// Without the cookie the form only leads to the login.
	wantPage(t, h.dash(dashReq{method: "POST", path: thread + "/take", form: url.Values{}, header: h.origin()}),
		http.StatusSeeOther, "/ui/login", "take without a session")
	if got := h.p.Owner(page, u); got != agentApp {
		t.Fatalf("owner after refused forms: %q; want the agent's app", got)
	}
	for _, ch := range h.detail(u).History {
		if ch.Reason.Actor == "operator" {
			t.Fatalf("a refused form reached the thread: %+v", ch)
		}
	}

	// From the dashboard's own page (its Referer, as without an Origin),
	// the take runs, and the browser is sent back to the thread's page
	// with a message.
	a := h.dash(dashReq{method: "POST", path: thread + "/take", form: url.Values{"reason": {"from the page"}}, cookie: c,
		header: map[string]string{"Referer": h.baton.AdminURL() + thread}})
	wantPage(t, a, http.StatusSeeOther, thread, "take from the dashboard")
	h.untilOwner(u, botApp)
	var flash *http.Cookie
	for _, fc := range (&http.Response{Header: a.header}).Cookies() {
		if fc.Name == "baton_flash" {
			flash = fc
		}
	}
	if flash == nil {
		t.Fatal("the take left no message")
	}
	p := h.dash(dashReq{path: thread, header: map[string]string{"Cookie": c.Name + "=" + c.Value + "; baton_flash=" + flash.Value}})
	if !strings.Contains(p.body, "Take back queued") {
		t.Errorf("thread page after the take lacks its message:\n%s", p.body)
	}
}

// User ids and notes come from outside: pages show them as text, and
// links to a thread escape its id, "/" and "%" included.
func TestDashboardEscapesWhatUsersWrote(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{})
	const u = `<script>alert(1)</script>/50%"'&`
	h.handOverRecorded(u)
	h.untilOwner(u, agentApp)
	c := h.signIn()

	thread := "/ui/threads/" + page + "/" + url.PathEscape(u)
	over := h.dash(dashReq{path: "/ui/", cookie: c})
	wantPage(t, over, http.StatusOK, "", "overview")
	if strings.Contains(over.body, "<script>") || !strings.Contains(over.body, html.EscapeString(page+"/"+u)) {
		t.Errorf("overview does not escape the user id:\n%s", over.body)
	}
	if !strings.Contains(over.body, `href="`+html.EscapeString(thread)+`"`) {
		t.Errorf("overview lacks the link %q:\n%s", thread, over.body)
	}
	if !strings.Contains(over.body, ">helpdesk<") {
		t.Errorf("overview does not name the owner helpdesk:\n%s", over.body)
	}

	const note = `<img src=x onerror=alert(2)>`
	a := h.dash(dashReq{method: "POST", path: thread + "/take", form: url.Values{"reason": {note}}, cookie: c, header: h.origin()})
	wantPage(t, a, http.StatusSeeOther, thread, "take")
	h.untilOwner(u, botApp)
	var p pageAnswer
	h.until(func() bool {
		p = h.dash(dashReq{path: thread, cookie: c})
		return strings.Contains(p.body, html.EscapeString("take: "+note))
	}, func() string { return fmt.Sprintf("the thread's page never showed the take's note:\n%s", p.body) })
	if strings.Contains(p.body, "<img") || strings.Contains(p.body, "<script>") {
		t.Errorf("the thread's page does not escape:\n%s", p.body)
	}
	if !strings.Contains(p.body, `action="`+html.EscapeString(thread)+`/take"`) {
		t.Errorf("the take form does not post to %s:\n%s", thread, p.body)
	}

	for path, status := range map[string]int{
		"/ui/threads/" + page + "/nobody":       http.StatusNotFound,
		"/ui/threads/not-a-page/" + u[:8]:       http.StatusBadRequest,
		"/ui/no-such-page":                      http.StatusNotFound,
		"/ui/threads/" + page + "/%3Cscript%3E": http.StatusNotFound,
	} {
		a := h.dash(dashReq{path: path, cookie: c})
		wantPage(t, a, status, "", path)
		if strings.Contains(a.body, "<script>") {
			t.Errorf("%s: the error page does not escape:\n%s", path, a.body)
		}
	}
}

// Without a token (loopback only) the pages need no sign-in.
func TestDashboardWithoutAToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	wantPage(t, h.dash(dashReq{path: "/ui/"}), http.StatusOK, "", "overview")
	wantPage(t, h.dash(dashReq{path: "/ui/login"}), http.StatusSeeOther, "/ui/", "login form")
	// Forms still have to come from the dashboard.
	h.p.UserText(page, "9701", "hello")
	h.waitText(h.bot, "9701", "hello")
	wantPage(t, h.dash(dashReq{method: "POST", path: "/ui/threads/" + page + "/9701/take", form: url.Values{}}), http.StatusForbidden, "", "take without an origin")
}

// submit posts a form of the dashboard as a browser would (with the
// session and the dashboard's Origin), follows the redirect with the
// message the POST left, and returns that page.
func (h *harness) submit(path string, form url.Values, session *http.Cookie) pageAnswer {
	h.t.Helper()
	a := h.dash(dashReq{method: "POST", path: path, form: form, cookie: session, header: h.origin()})
	if a.status != http.StatusSeeOther {
		h.t.Fatalf("POST %s: %d; want 303\n%s", path, a.status, a.body)
	}
	cookies := session.Name + "=" + session.Value
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "baton_flash" {
			cookies += "; " + c.Name + "=" + c.Value
		}
	}
	return h.dash(dashReq{path: a.header.Get("Location"), header: map[string]string{"Cookie": cookies}})
}

// Dead letters show on the overview and the thread's page, which replays
// them; a failed reload's problems show on the overview.
func TestDashboardDeadLettersAndPolicyProblems(t *testing.T) {
	t.Parallel()
	h := adminHarness(t, harnessOpts{extraConfig: "reload:\n  watch: false\n"})
	const u = "9801"
	h.bot.SetFailing(http.StatusBadRequest)
	h.p.UserText(page, u, "first")
	h.until(func() bool {
		return strings.Contains(string(h.call("GET", "/api/v1/dead-letters?thread="+page+"/"+u, "").body), `"seq"`)
	}, func() string { return "no dead letter" })
	h.bot.SetFailing(0)
	seq := h.detail(u).DeadLetters[0].Seq
	c := h.signIn()

	thread := "/ui/threads/" + page + "/" + u
	over := h.dash(dashReq{path: "/ui/", cookie: c})
	dead := over.body[strings.Index(over.body, `id="dead-letters"`):]
	if !strings.Contains(dead, `href="`+thread+`"`) || !strings.Contains(dead, "<td>1</td>") {
		t.Errorf("overview's dead letters lack %s with 1:\n%s", thread, dead)
	}
	p := h.dash(dashReq{path: thread, cookie: c})
	if !strings.Contains(p.body, fmt.Sprintf(`name="seq" value="%d"`, seq)) || !strings.Contains(p.body, "message") {
		t.Errorf("thread page lacks dead letter #%d:\n%s", seq, p.body)
	}

	p = h.submit(thread+"/replay", url.Values{"seq": {"999999"}}, c)
	if !strings.Contains(p.body, "No dead letter #999999") {
		t.Errorf("replay of a dead letter that is not there:\n%s", p.body)
	}
	p = h.submit(thread+"/replay", url.Values{"seq": {fmt.Sprint(seq)}}, c)
	if !strings.Contains(p.body, "Replayed 1 dead letter:") {
		t.Errorf("replay's message missing:\n%s", p.body)
	}
	h.waitText(h.bot, u, "first")
	if d := h.detail(u); len(d.DeadLetters) != 0 {
		t.Errorf("dead letters after the replay: %+v", d.DeadLetters)
	}
	wantPage(t, h.dash(dashReq{method: "POST", path: thread + "/replay", form: url.Values{"seq": {"x"}}, cookie: c, header: h.origin()}),
		http.StatusBadRequest, "", "replay of seq x")

	h.writePolicy("version: 1\nrules:\n  - name: x\n    do: [{pas: {to: \"<b>helpdesk</b>\"}}]\n")
	if err := h.baton.Reload(); err == nil {
		t.Fatal("a bad policy reloaded")
	}
	over = h.dash(dashReq{path: "/ui/", cookie: c})
	if !strings.Contains(over.body, "reload failed") || !strings.Contains(over.body, "policy.yaml:4") || strings.Contains(over.body, "<b>helpdesk") {
		t.Errorf("overview after a failed reload:\n%s", over.body)
	}
}
