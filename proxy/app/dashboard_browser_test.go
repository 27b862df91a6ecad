package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	clockpkg "github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/state"
)

// The dashboard in a real browser: Debian's chromium, headless, driven
// over the DevTools protocol. A conversation goes through the sandbox
// until the agent's app has the thread; the dashboard shows it with its
// owner, its page shows the timeline, and "Take back" on that page gives
// the thread to the bot's app on the platform.
//
// Without chromium the test skips, unless CI is set: there it fails, so
// CI never passes without having run it (.ci/run installs chromium).
//
// BATON_DASHBOARD_SCREENSHOT=testdata/screenshots/dashboard.png (a path
// from the repository's root, or absolute) saves the overview as the
// README shows it.

// chromiumPaths are where Debian's package puts the browser.
var chromiumPaths = []string{"/usr/bin/chromium", "/usr/lib/chromium/chromium"}

func findChromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	for _, p := range chromiumPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	const msg = "chromium is not installed (apt-get install chromium): the dashboard's browser test needs it"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must run this test")
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless chromium for the test and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	return tab
}

func TestDashboardInABrowser(t *testing.T) {
	t.Parallel()
	// Baton and the sandbox run on a fake clock, so the figures and the
	// "for how long" are minutes, as in a real day, not milliseconds. It
	// starts at the wall clock's time, which the policies' load time
	// shows.
	h := adminHarness(t, harnessOpts{
		clock:       clockpkg.NewFake(time.Now().UTC().Truncate(time.Second)),
		policy:      demo.Policy + firstReplyTimeout,
		extraConfig: "reload:\n  watch: false\n",
	})
	// After Baton, so the browser is gone before Baton stops: the admin
	// server's shutdown waits for a connection the browser opened ahead
	// of a request (up to 5 s in net/http).
	tab := browser(t)

	// Users ask for a human and the demo's rule passes their threads to
	// the agent's app (helpdesk). The agent answers two of them; nobody
	// answers the third, whose agent_first_reply timeout takes it back
	// after 10 minutes. A fourth user only talks to the bot.
	const u, answered, unanswered, chat, refused = "7700112233", "7700445566", "7700998877", "7700778899", "7700665544"
	agentSays := func(user, text string) {
		t.Helper()
		if _, err := h.p.Send(agentApp, page, user, text); err != nil {
			t.Fatal(err)
		}
		h.until(func() bool { return !h.thread(user).LastOther.IsZero() }, func() string { return "the agent's answer was never decided" })
	}
	h.handOverRecorded(unanswered)
	h.advance(2 * time.Minute)
	h.handOverRecorded(u)
	h.advance(3 * time.Minute)
	agentSays(u, "Hi, I'm Sam from support. How can I help?")
	h.handOverRecorded(answered)
	h.advance(2 * time.Minute)
	agentSays(answered, "Hello! Ana here, looking at your order now.")
	h.toBot(chat, "what are your opening hours?")
	// The bot refuses a message until it is set aside as a dead letter:
	// its retries wait on the clock, which moves on while they do.
	h.bot.SetFailing(http.StatusBadRequest)
	h.p.UserText(page, refused, "my order number is 4411")
	h.until(func() bool {
		h.clock.Advance(100 * time.Millisecond)
		return strings.Contains(string(h.call("GET", "/api/v1/dead-letters?thread="+page+"/"+refused, "").body), `"seq"`)
	}, func() string { return "the refused message never became a dead letter" })
	h.bot.SetFailing(0)
	h.advance(4 * time.Minute)
	h.waitKind(h.agent, unanswered, "take_thread_control")
	h.until(func() bool { return h.thread(unanswered).Owner.Kind == state.OwnerBot },
		func() string { return "the timeout's take was never recorded" })

	admin := h.baton.AdminURL()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// The dashboard asks for the token first.
	run("sign in",
		chromedp.Navigate(admin+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.ID("with-people")),
	)
	withPeople := text("#with-people")
	for _, user := range []string{u, answered} {
		if !strings.Contains(withPeople, page+"/"+user) {
			t.Errorf("with people: %q lacks %s", withPeople, user)
		}
	}
	if strings.Contains(withPeople, chat) || strings.Contains(withPeople, unanswered) || !strings.Contains(withPeople, "helpdesk") {
		t.Errorf("with people: %q; want two threads with helpdesk, not %s or %s", withPeople, chat, unanswered)
	}
	// Oldest first, with how long: u's since 10:02, 9 minutes.
	if i, j := strings.Index(withPeople, u), strings.Index(withPeople, answered); i > j || !strings.Contains(withPeople, "9m") {
		t.Errorf("with people: %q; want %s first, with people for 9m", withPeople, u)
	}
	if got := text("#handovers"); !strings.Contains(got, "talk-to-human") || !strings.Contains(got, "timeout:agent_first_reply") {
		t.Errorf("recent handovers: %q; want talk-to-human and the timeout", got)
	}
	// The first replies took 3 and 2 minutes; the thread nobody answered
	// left people when its timeout ran (10 minutes, and the minute the
	// clock moved on while it ran).
	if got := text("#figures"); !strings.Contains(got, "2m30s") || !strings.Contains(got, "mean of 2") || !strings.Contains(got, "mean of 1") {
		t.Errorf("figures: %q; want a first reply of 2m30s in the mean of 2, one time with people", got)
	}
	if got := text("#dead-letters"); !strings.Contains(got, page+"/"+refused) {
		t.Errorf("dead letters: %q; want %s's", got, refused)
	}
	if shot := os.Getenv("BATON_DASHBOARD_SCREENSHOT"); shot != "" {
		saveScreenshot(t, tab, shot)
	}

	// The thread's page: owner and timeline.
	run("open the thread",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#with-people a[href="/ui/threads/%s/%s"]`, page, u))),
		chromedp.WaitVisible(chromedp.ID("timeline")),
	)
	if got := text("#owner"); got != "helpdesk" {
		t.Errorf("thread page owner %q; want helpdesk", got)
	}
	if got := text("#timeline"); !strings.Contains(got, "bot → helpdesk") || !strings.Contains(got, "talk-to-human") {
		t.Errorf("timeline %q; want the handover to helpdesk by talk-to-human", got)
	}

	// Take it back from the page: the platform's owner becomes the bot's app.
	run("take back",
		chromedp.SendKeys(chromedp.ID("reason"), "customer asked for the bot"),
		chromedp.Click(chromedp.ID("take")),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	)
	if got := text(".flash"); !strings.Contains(got, "Take back queued") {
		t.Errorf("message after the take: %q", got)
	}
	h.untilOwner(u, botApp)
	h.until(func() bool {
		run("reload the thread", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("timeline")))
		return text("#owner") == "bot" && strings.Contains(text("#timeline"), "take: customer asked for the bot")
	}, func() string {
		return fmt.Sprintf("the thread's page never showed the take: owner %q, timeline %q", text("#owner"), text("#timeline"))
	})
	if got := text("#timeline"); !strings.Contains(got, "helpdesk → bot") || !strings.Contains(got, "by operator") {
		t.Errorf("timeline after the take %q; want helpdesk → bot by operator", got)
	}

	// The refused message, replayed from its thread's page, reaches the bot.
	run("replay a dead letter",
		chromedp.Navigate(admin+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("dead-letters")),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#dead-letters a[href="/ui/threads/%s/%s"]`, page, refused))),
		chromedp.WaitVisible(chromedp.ID("replay-all")),
		chromedp.Click(chromedp.ID("replay-all")),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	)
	if got := text(".flash"); !strings.Contains(got, "Replayed 1 dead letter:") {
		t.Errorf("message after the replay: %q", got)
	}
	h.waitText(h.bot, refused, "my order number is 4411")
}

// saveScreenshot writes the tab as a PNG to path, taken from the
// repository's root when relative.
func saveScreenshot(t *testing.T, tab context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !filepath.IsAbs(path) {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(root, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot: %s (%d bytes)", path, len(png))
}

// repoRoot is the directory holding go.mod, above the test's.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}
