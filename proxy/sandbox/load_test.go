package sandbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loadUsers makes n distinct PSIDs.
func loadUsers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(7_000_000_000_000 + i)
	}
	return out
}

// upTo is a Text that ends every user's traffic after n messages.
func upTo(n int) func(string, int) string {
	return func(_ string, i int) string {
		if i > n {
			return ""
		}
		return "load " + strconv.Itoa(i)
	}
}

func startLoad(t *testing.T, p *Platform, o LoadOptions) *Load {
	t.Helper()
	l, err := p.StartLoad(o)
	if err != nil {
		t.Fatalf("StartLoad: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// textsBy lists the texts r received on channel, per user, in arrival order.
func textsBy(r *Receiver, channel string) map[string][]string {
	out := map[string][]string{}
	for _, e := range r.Events() {
		if e.Kind == RecvText && e.Channel == channel {
			out[e.User] = append(out[e.User], e.Text)
		}
	}
	return out
}

func wantTexts(n int) string {
	var b []string
	for i := 1; i <= n; i++ {
		b = append(b, "load "+strconv.Itoa(i))
	}
	return strings.Join(b, ",")
}

// Every user's events reach the load's app once, in order, on messaging[];
// the other apps get their standby copies through their outboxes, and the
// transcript has every line.
func TestLoadDeliversEachUsersEventsInOrder(t *testing.T) {
	f := newFixture(t, botID)
	users := loadUsers(10)
	const each = 20
	l := startLoad(t, f.p, LoadOptions{App: botID, URL: f.bot.URL(), Page: testPage, Users: users, Rate: 4000, Text: upTo(each)})
	if err := l.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.flush(t)
	if st := l.Stats(); st.Events != len(users)*each || st.Acked != st.Events || st.Posts != st.Events || st.Failed != 0 {
		t.Errorf("stats %+v; want %d events, each acked at its first POST", st, len(users)*each)
	}
	got, standby := textsBy(f.bot, channelMessaging), textsBy(f.desk, channelStandby)
	for _, u := range users {
		if s := strings.Join(got[u], ","); s != wantTexts(each) {
			t.Errorf("user %s: the load's app got %s; want %s", u, s, wantTexts(each))
		}
		if s := strings.Join(standby[u], ","); s != wantTexts(each) {
			t.Errorf("user %s: another app got %s on standby; want every event", u, s)
		}
		if n := len(f.p.Transcript(testPage, u)); n != each {
			t.Errorf("user %s: %d transcript lines; want %d", u, n, each)
		}
		if o := f.p.Owner(testPage, u); o != botID {
			t.Errorf("user %s: owner %q; want the default app", u, o)
		}
	}
	for _, ev := range l.Events() {
		if ev.Channel != channelMessaging || ev.MID == "" || ev.Acked.IsZero() || ev.Posts != 1 {
			t.Fatalf("event %+v; want a messaging event with a mid, acked at once", ev)
		}
	}
}

// A receiver that fails holds each user's next event back; every event is
// posted again, same bytes, until answered 200, and none is lost or
// reordered.
func TestLoadResendsUntilAnswered200(t *testing.T) {
	f := newFixture(t, botID)
	f.bot.SetFailing(503)
	users := loadUsers(5)
	const each = 5
	l := startLoad(t, f.p, LoadOptions{App: botID, URL: f.bot.URL(), Page: testPage, Users: users, Rate: 1000,
		Text: upTo(each), RetryDelay: time.Millisecond})
	if err := f.bot.WaitRefused(testCtx(t), 30); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Acked != 0 || st.Events != len(users) {
		t.Errorf("while failing: stats %+v; want one event per user, none acked", st)
	}
	f.bot.SetFailing(0)
	if err := l.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Events != len(users)*each || st.Acked != st.Events || st.Failed < 30 || st.Posts != st.Acked+st.Failed {
		t.Errorf("stats %+v; want %d events acked after at least 30 failed POSTs", st, len(users)*each)
	}
	got := textsBy(f.bot, channelMessaging)
	for _, u := range users {
		if s := strings.Join(got[u], ","); s != wantTexts(each) {
			t.Errorf("user %s: got %s; want %s", u, s, wantTexts(each))
		}
	}
}

// After a pass the user's events reach the load's app on standby, as the
// platform's rules say, and the new owner gets them on messaging[].
func TestLoadFollowsTheThreadOwner(t *testing.T) {
	f := newFixture(t, botID)
	user := loadUsers(1)[0]
	text := func(u string, n int) string {
		switch n {
		case 1:
			return "before"
		case 2:
			if err := f.p.Pass(botID, testPage, u, deskID, ""); err != nil {
				t.Errorf("pass: %v", err)
			}
			return "after"
		}
		return ""
	}
	l := startLoad(t, f.p, LoadOptions{App: botID, URL: f.bot.URL(), Page: testPage, Users: []string{user}, Rate: 100, Text: text})
	if err := l.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.flush(t)
	var channels []string
	for _, ev := range l.Events() {
		channels = append(channels, ev.Text+":"+ev.Channel)
	}
	if got, want := strings.Join(channels, ","), "before:messaging,after:standby"; got != want {
		t.Errorf("channels %s; want %s", got, want)
	}
	if got := strings.Join(textsBy(f.bot, channelStandby)[user], ","); got != "after" {
		t.Errorf("the load's app got %q on standby; want after", got)
	}
	if got := strings.Join(textsBy(f.desk, channelMessaging)[user], ","); got != "after" {
		t.Errorf("the new owner got %q on messaging; want after", got)
	}
}

// Stop ends generation but finishes the events in hand; Close abandons
// them, and Wait says how many were never answered.
func TestLoadStopAndClose(t *testing.T) {
	f := newFixture(t, botID)
	users := loadUsers(4)
	l := startLoad(t, f.p, LoadOptions{App: botID, URL: f.bot.URL(), Page: testPage, Users: users, Rate: 2000})
	if err := f.bot.WaitFor(testCtx(t), func(evs []Received) bool { return len(evs) >= 20 }); err != nil {
		t.Fatal(err)
	}
	l.Stop()
	if err := l.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Acked != st.Events || st.Events < 20 {
		t.Errorf("after Stop: stats %+v; want every event generated acked", st)
	}

	f.bot.SetFailing(500)
	stuck := startLoad(t, f.p, LoadOptions{App: botID, URL: f.bot.URL(), Page: testPage, Users: loadUsers(2), Rate: 1000})
	if err := f.bot.WaitRefused(testCtx(t), 5); err != nil {
		t.Fatal(err)
	}
	stuck.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := stuck.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "not answered 200") {
		t.Errorf("Wait with a failing receiver: %v; want the unanswered count", err)
	}
	stuck.Close() // returns although the events were never answered
}

func TestLoadOptionsReportEveryProblem(t *testing.T) {
	f := newFixture(t, botID)
	_, err := f.p.StartLoad(LoadOptions{App: "42", Page: "1", Users: []string{"u", "", "u"}, Rate: 0, RetryDelay: -1})
	if err == nil {
		t.Fatal("StartLoad accepted bad options")
	}
	for _, want := range []string{`App "42"`, "URL", `Page "1"`, "Users[1]", `duplicate user "u"`, "Rate 0", "RetryDelay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := f.p.StartLoad(LoadOptions{App: botID, URL: "http://x", Page: testPage}); err == nil ||
		!strings.Contains(err.Error(), "at least one user") {
		t.Errorf("no users: %v", err)
	}
}

func ExamplePlatform_StartLoad() {
	p, err := Start(Options{Pages: []string{"1"}, DefaultApp: "11", Apps: []AppSpec{{ID: "11", Secret: "s"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	bot, err := StartReceiver("s")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bot.Close()
	l, err := p.StartLoad(LoadOptions{App: "11", URL: bot.URL(), Page: "1", Users: []string{"21", "22"}, Rate: 1000, Text: upTo(3)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l.Stats().Acked, len(bot.Events()))
	// Output: 6 6
}
