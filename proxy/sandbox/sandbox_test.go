package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

const (
	testPage = "104455667788990"
	alice    = "7712345678901234"
	bob      = "7712345678905678"

	botID   = "555000111222333" // the Page's default app (the bot Baton fronts)
	inboxID = "263902037430900" // Page Inbox: may not take
	deskID  = "999888777666555" // helpdesk app with the take permission

	botSecret   = "bot-secret"
	inboxSecret = "inbox-secret"
	deskSecret  = "desk-secret"
)

var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is a platform with three apps, each with a healthy receiver.
type fixture struct {
	p                *Platform
	clk              *clock.Fake
	bot, inbox, desk *Receiver
}

func newFixture(t *testing.T, defaultApp string) *fixture {
	t.Helper()
	f := &fixture{clk: clock.NewFake(testStart)}
	f.bot = startReceiver(t, botSecret)
	f.inbox = startReceiver(t, inboxSecret)
	f.desk = startReceiver(t, deskSecret)
	p, err := Start(Options{
		Pages:      []string{testPage},
		DefaultApp: defaultApp,
		Apps: []AppSpec{
			{ID: botID, Secret: botSecret, WebhookURL: f.bot.URL()},
			{ID: inboxID, Secret: inboxSecret, WebhookURL: f.inbox.URL()},
			{ID: deskID, Secret: deskSecret, WebhookURL: f.desk.URL(), CanTake: true},
		},
		Clock:      f.clk,
		RetryDelay: 2 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Cleanups run last-in first-out: the platform stops before the receivers.
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	f.p = p
	return f
}

func startReceiver(t *testing.T, secret string) *Receiver {
	t.Helper()
	r, err := StartReceiver(secret)
	if err != nil {
		t.Fatalf("StartReceiver: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) flush(t *testing.T) {
	t.Helper()
	if err := f.p.Flush(testCtx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// summary renders events as "channel/kind:text" for compact comparisons.
func summary(evs []Received) string {
	var parts []string
	for _, ev := range evs {
		s := ev.Channel + "/" + ev.Kind
		if ev.Text != "" {
			s += ":" + ev.Text
		}
		if ev.Payload != "" {
			s += "=" + ev.Payload
		}
		if ev.AppID != "" {
			s += "@" + ev.AppID
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func wantEvents(t *testing.T, name string, r *Receiver, want string) {
	t.Helper()
	if got := summary(r.Events()); got != want {
		t.Errorf("%s events:\n got %q\nwant %q", name, got, want)
	}
}

// graphResp is a decoded Graph API answer.
type graphResp struct {
	status int
	body   map[string]any
}

func (g graphResp) errCode() (code, subcode int) {
	e, _ := g.body["error"].(map[string]any)
	c, _ := e["code"].(float64)
	s, _ := e["error_subcode"].(float64)
	return int(c), int(s)
}

// graph calls the platform's Graph API with net/http, independently of the
// fasthttp code under test.
func graph(t *testing.T, p *Platform, method, path, token string, body any) graphResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	u := p.URL() + path
	if token != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "access_token=" + token
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, u, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	out := graphResp{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	return out
}

func recipient(user string) map[string]any { return map[string]any{"id": user} }

func TestUserMessagesGoToOwnerOthersOnStandby(t *testing.T) {
	f := newFixture(t, botID)

	// Idle thread + routing: the default app becomes the owner first.
	f.p.UserText(testPage, alice, "hi")
	if got := f.p.Owner(testPage, alice); got != botID {
		t.Fatalf("owner after first message = %q, want default app %s", got, botID)
	}
	if err := f.p.Pass(botID, testPage, alice, inboxID, "handoff"); err != nil {
		t.Fatalf("Pass: %v", err)
	}
	f.p.UserText(testPage, alice, "are you human?")
	f.flush(t)

	wantEvents(t, "bot", f.bot, "messaging/text:hi standby/text:are you human?")
	wantEvents(t, "inbox", f.inbox, "standby/text:hi messaging/pass_thread_control:handoff@"+inboxID+" messaging/text:are you human?")
	wantEvents(t, "desk", f.desk, "standby/text:hi standby/text:are you human?")

	ev := f.bot.Events()[0]
	if ev.Page != testPage || ev.User != alice || ev.Object != "page" || !strings.HasPrefix(ev.MID, "m_") {
		t.Errorf("first bot event = %+v", ev)
	}

	lines := f.p.Transcript(testPage, alice)
	var got []string
	for _, l := range lines {
		got = append(got, fmt.Sprintf("%s %s %q -> %s", l.From, l.Kind, l.Text, l.Owner))
	}
	want := []string{
		`user text "hi" -> ` + botID,
		botID + ` pass "handoff" -> ` + inboxID,
		`user text "are you human?" -> ` + inboxID,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !lines[0].At.Equal(testStart) {
		t.Errorf("line time = %v, want the fake clock's %v", lines[0].At, testStart)
	}
}

func TestZeroConfigEveryAppOnMessaging(t *testing.T) {
	f := newFixture(t, "")
	f.p.UserText(testPage, alice, "hello")
	f.flush(t)
	for name, r := range map[string]*Receiver{"bot": f.bot, "inbox": f.inbox, "desk": f.desk} {
		wantEvents(t, name, r, "messaging/text:hello")
	}
	if got := f.p.Owner(testPage, alice); got != "" {
		t.Errorf("owner = %q, want idle", got)
	}
	// Anyone may send on an idle zero-config thread.
	if _, err := f.p.Send(deskID, testPage, alice, "we are here"); err != nil {
		t.Errorf("Send on idle zero-config thread: %v", err)
	}
	// Take needs Conversation Routing.
	var apiErr *APIError
	if err := f.p.Take(deskID, testPage, alice, ""); !errors.As(err, &apiErr) || apiErr.Code != 27 {
		t.Errorf("Take in zero-config mode: %v, want code 27", err)
	}
}

func TestOnlyOwnerMaySendOverHTTP(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")

	msg := map[string]any{
		"recipient":      recipient(alice),
		"messaging_type": "RESPONSE",
		"message":        map[string]any{"text": "I am the inbox"},
	}
	r := graph(t, f.p, "POST", "/v25.0/"+testPage+"/messages", f.p.Token(testPage, inboxID), msg)
	if code, sub := r.errCode(); r.status != 400 || code != 10 || sub != 2018300 {
		t.Fatalf("non-owner send: status %d code %d/%d, want 400 10/2018300 (%v)", r.status, code, sub, r.body)
	}
	e := r.body["error"].(map[string]any)
	if e["type"] != "OAuthException" || e["fbtrace_id"] == "" ||
		e["message"] != "(#10) Message failed to send because another app is controlling this thread now." {
		t.Errorf("error body = %v", e)
	}

	msg["message"] = map[string]any{"text": "I am the bot", "metadata": "baton:test"}
	r = graph(t, f.p, "POST", "/v25.0/me/messages", f.p.Token(testPage, botID), msg)
	if r.status != 200 || r.body["recipient_id"] != alice || !strings.HasPrefix(fmt.Sprint(r.body["message_id"]), "m_") {
		t.Fatalf("owner send: %d %v", r.status, r.body)
	}
	f.flush(t)

	wantEvents(t, "bot", f.bot, "messaging/text:hi messaging/echo:I am the bot@"+botID)
	wantEvents(t, "inbox", f.inbox, "standby/text:hi standby/echo:I am the bot@"+botID)
	echo := f.bot.Events()[1]
	if echo.User != alice || echo.MID != r.body["message_id"] {
		t.Errorf("echo = %+v", echo)
	}
	// app_id is a JSON number in echoes, metadata is echoed back.
	if !bytes.Contains(echo.Raw, []byte(`"app_id":`+botID)) || !bytes.Contains(echo.Raw, []byte(`"metadata":"baton:test"`)) ||
		!bytes.Contains(echo.Raw, []byte(`"sender":{"id":"`+testPage+`"}`)) {
		t.Errorf("echo raw = %s", echo.Raw)
	}

	calls := f.p.Calls()
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	if c := calls[0]; c.AppID != inboxID || c.Page != testPage || c.Endpoint != "messages" || c.Method != "POST" ||
		c.Status != 400 || c.Code != 10 || c.Subcode != 2018300 || !strings.Contains(c.Body, "I am the inbox") {
		t.Errorf("call 0 = %+v", c)
	}
	if c := calls[1]; c.AppID != botID || c.Status != 200 || c.Code != 0 {
		t.Errorf("call 1 = %+v", c)
	}
	last := f.p.Transcript(testPage, alice)[1]
	if last.Kind != KindSend || last.From != botID || last.Text != "I am the bot" {
		t.Errorf("send line = %+v", last)
	}
}

func TestHandoverWebhooksReachTheRightApps(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	base := "/v25.0/" + testPage + "/"

	// Pass with a numeric target_app_id, as Meta's examples send it.
	r := graph(t, f.p, "POST", base+"pass_thread_control", f.p.Token(testPage, botID),
		map[string]any{"recipient": recipient(alice), "target_app_id": json.Number(inboxID), "metadata": "to inbox"})
	if r.status != 200 || r.body["success"] != true {
		t.Fatalf("pass: %d %v", r.status, r.body)
	}
	// The helpdesk takes it from the inbox.
	r = graph(t, f.p, "POST", base+"take_thread_control", f.p.Token(testPage, deskID),
		map[string]any{"recipient": recipient(alice), "metadata": "agent picked up"})
	if r.status != 200 {
		t.Fatalf("take: %d %v", r.status, r.body)
	}
	// The bot asks for it back.
	r = graph(t, f.p, "POST", base+"request_thread_control", f.p.Token(testPage, botID),
		map[string]any{"recipient": recipient(alice), "metadata": "please"})
	if r.status != 200 {
		t.Fatalf("request: %d %v", r.status, r.body)
	}
	// The helpdesk releases: idle, no webhook.
	r = graph(t, f.p, "POST", base+"release_thread_control", f.p.Token(testPage, deskID),
		map[string]any{"recipient": recipient(alice), "metadata": "done"})
	if r.status != 200 || f.p.Owner(testPage, alice) != "" {
		t.Fatalf("release: %d %v owner %q", r.status, r.body, f.p.Owner(testPage, alice))
	}
	// Requesting an idle thread passes it to the requester.
	if err := f.p.Request(inboxID, testPage, alice, "mine now"); err != nil {
		t.Fatalf("Request on idle: %v", err)
	}
	// Take from idle: no webhook to anyone.
	if err := f.p.Release(inboxID, testPage, alice, ""); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := f.p.Take(deskID, testPage, alice, "from idle"); err != nil {
		t.Fatalf("Take from idle: %v", err)
	}
	f.flush(t)

	wantEvents(t, "bot", f.bot, "messaging/text:hi")
	wantEvents(t, "inbox", f.inbox, "standby/text:hi messaging/pass_thread_control:to inbox@"+inboxID+
		" messaging/take_thread_control:agent picked up@"+deskID+" messaging/pass_thread_control:mine now@"+inboxID)
	wantEvents(t, "desk", f.desk, "standby/text:hi messaging/request_thread_control:please@"+botID)

	pass := f.inbox.Events()[1]
	if !bytes.Contains(pass.Raw, []byte(`"previous_owner_app_id":"`+botID+`"`)) || pass.User != alice {
		t.Errorf("pass event = %s", pass.Raw)
	}
	take := f.inbox.Events()[2]
	if !bytes.Contains(take.Raw, []byte(`"previous_owner_app_id":"`+inboxID+`"`)) {
		t.Errorf("take event = %s", take.Raw)
	}
	if idlePass := f.inbox.Events()[3]; bytes.Contains(idlePass.Raw, []byte("previous_owner_app_id")) {
		t.Errorf("pass from idle should have no previous owner: %s", idlePass.Raw)
	}
	if got := f.p.Owner(testPage, alice); got != deskID {
		t.Errorf("owner = %q, want %s", got, deskID)
	}
}

func TestThreadControlErrors(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi") // bot owns
	tests := []struct {
		name          string
		do            func() error
		code, subcode int
	}{
		{"pass by non-owner", func() error { return f.p.Pass(inboxID, testPage, alice, deskID, "") }, 100, 2534037},
		{"pass to itself", func() error { return f.p.Pass(botID, testPage, alice, botID, "") }, 100, 0},
		{"pass to unknown app", func() error { return f.p.Pass(botID, testPage, alice, "12345", "") }, 100, 0},
		{"take without permission", func() error { return f.p.Take(inboxID, testPage, alice, "") }, 10, 0},
		{"release by non-owner", func() error { return f.p.Release(deskID, testPage, alice, "") }, 100, 2534037},
		{"request by owner", func() error { return f.p.Request(botID, testPage, alice, "") }, 100, 0},
		{"unknown user", func() error { return f.p.Pass(botID, testPage, bob, inboxID, "") }, 100, 2018001},
		{"unknown app", func() error { return f.p.Release("42", testPage, alice, "") }, 190, 0},
		{"extend by non-owner", func() error { return f.p.Extend(deskID, testPage, alice, time.Hour) }, 100, 2534037},
		{"extend too long", func() error { return f.p.Extend(botID, testPage, alice, 8*24*time.Hour) }, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var apiErr *APIError
			err := tt.do()
			if !errors.As(err, &apiErr) || apiErr.Code != tt.code || apiErr.Subcode != tt.subcode {
				t.Fatalf("err = %v, want code %d/%d", err, tt.code, tt.subcode)
			}
		})
	}
	if got := f.p.Owner(testPage, alice); got != botID {
		t.Errorf("failed calls changed the owner to %q", got)
	}
	// Pass without a target goes to the default app.
	if err := f.p.Pass(botID, testPage, alice, inboxID, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Pass(inboxID, testPage, alice, "", "back"); err != nil {
		t.Fatalf("Pass to default: %v", err)
	}
	if got := f.p.Owner(testPage, alice); got != botID {
		t.Errorf("owner = %q, want default app", got)
	}
	if err := f.p.Take(deskID, testPage, alice, ""); err != nil {
		t.Fatal(err)
	}
	var apiErr *APIError
	if err := f.p.Take(deskID, testPage, alice, ""); !errors.As(err, &apiErr) || apiErr.Code != 100 {
		t.Errorf("take own thread: %v, want code 100", err)
	}
}

func TestPostbackPayloadRemovedOnStandby(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserPostback(testPage, alice, "Chat with support", "AGENT_HANDOFF")
	f.p.UserQuickReply(testPage, alice, "Yes", "HANDOFF_YES")
	f.flush(t)
	wantEvents(t, "bot", f.bot, "messaging/postback:Chat with support=AGENT_HANDOFF messaging/quick_reply:Yes=HANDOFF_YES")
	wantEvents(t, "inbox", f.inbox, "standby/postback:Chat with support standby/quick_reply:Yes=HANDOFF_YES")
	if raw := f.inbox.Events()[0].Raw; bytes.Contains(raw, []byte("payload")) {
		t.Errorf("standby postback still has a payload: %s", raw)
	}
}

func TestOrderedRedeliveryAfterReceiverFailed(t *testing.T) {
	f := newFixture(t, botID)
	f.bot.SetFailing(503)
	for i := 1; i <= 3; i++ {
		f.p.UserText(testPage, alice, fmt.Sprintf("msg %d", i))
	}
	ctx := testCtx(t)
	// Two refusals prove the first webhook was tried and retried.
	if err := f.bot.WaitRefused(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(f.bot.Events()); n != 0 {
		t.Fatalf("failing receiver recorded %d events", n)
	}
	if n := f.p.Pending(botID); n != 3 {
		t.Errorf("pending for bot = %d, want 3", n)
	}
	// The healthy apps are not held up by the failing one.
	if err := f.inbox.WaitFor(ctx, func(evs []Received) bool { return len(evs) == 3 }); err != nil {
		t.Fatal(err)
	}
	f.bot.SetFailing(0)
	f.flush(t)
	wantEvents(t, "bot", f.bot, "messaging/text:msg 1 messaging/text:msg 2 messaging/text:msg 3")
	wantEvents(t, "inbox", f.inbox, "standby/text:msg 1 standby/text:msg 2 standby/text:msg 3")
}

func TestWebhooksCarryBothSignatures(t *testing.T) {
	f := newFixture(t, botID)
	// Non-ASCII text is sent \u-escaped and signed in that form, like Meta.
	f.p.UserText(testPage, alice, "héllo 👋")
	f.flush(t)
	evs := f.bot.Events()
	if len(evs) != 1 {
		t.Fatalf("events = %d", len(evs))
	}
	ev := evs[0]
	if !ev.Sig256OK || !ev.Sig1OK || f.bot.BadSignatures() != 0 {
		t.Errorf("signatures: 256 %v, sha1 %v, bad %d", ev.Sig256OK, ev.Sig1OK, f.bot.BadSignatures())
	}
	if ev.Text != "héllo 👋" || !bytes.Contains(ev.Body, []byte(`h\u00e9llo \ud83d\udc4b`)) {
		t.Errorf("text %q, body %s", ev.Text, ev.Body)
	}
	var env struct {
		Entry []struct {
			ID   string
			Time int64
		}
	}
	if err := json.Unmarshal(ev.Body, &env); err != nil || len(env.Entry) != 1 ||
		env.Entry[0].ID != testPage || env.Entry[0].Time != testStart.UnixMilli() {
		t.Errorf("envelope %s: %v", ev.Body, err)
	}
}

func TestReceiverChecksSignatures(t *testing.T) {
	r := startReceiver(t, botSecret)
	s := signature.New([]byte(botSecret))
	body := []byte(`{"object":"page","entry":[{"id":"1","time":1,"messaging":[` +
		`{"sender":{"id":"u1"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m_1","text":"a"}},` +
		`{"sender":{"id":"u2"},"recipient":{"id":"1"},"timestamp":2,"postback":{"mid":"m_2","title":"T","payload":"P"}}]}]}`)
	post := func(h256, h1 string) int {
		req, err := http.NewRequestWithContext(testCtx(t), "POST", r.URL(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if h256 != "" {
			req.Header.Set(signature.Header256, h256)
		}
		if h1 != "" {
			req.Header.Set(signature.Header1, h1)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(s.Sign256(body), s.Sign1(body)); code != 200 {
		t.Fatalf("good signatures: HTTP %d", code)
	}
	if code := post(s.Sign256(body), "sha1=00"); code != 200 {
		t.Errorf("bad legacy signature only: HTTP %d, want 200", code)
	}
	if code := post("", s.Sign1(body)); code != 403 {
		t.Errorf("missing sha256: HTTP %d, want 403", code)
	}
	if code := post(signature.New([]byte("other")).Sign256(body), s.Sign1(body)); code != 403 {
		t.Errorf("wrong sha256: HTTP %d, want 403", code)
	}
	if got := r.BadSignatures(); got != 3 {
		t.Errorf("BadSignatures = %d, want 3", got)
	}
	// Two POSTs accepted, two events each; the second had a bad sha1.
	evs := r.Events()
	if got := summary(evs); got != "messaging/text:a messaging/postback:T=P messaging/text:a messaging/postback:T=P" {
		t.Errorf("events = %q", got)
	}
	if !evs[0].Sig1OK || evs[2].Sig1OK {
		t.Errorf("Sig1OK = %v, %v", evs[0].Sig1OK, evs[2].Sig1OK)
	}
	if got := len(r.EventsFor("u2")); got != 2 {
		t.Errorf("EventsFor(u2) = %d events", got)
	}
	if string(evs[1].Raw) != `{"sender":{"id":"u2"},"recipient":{"id":"1"},"timestamp":2,"postback":{"mid":"m_2","title":"T","payload":"P"}}` {
		t.Errorf("raw = %s", evs[1].Raw)
	}
}

func TestThreadOwnerEndpoint(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	path := "/v25.0/" + testPage + "/thread_owner?recipient=" + alice
	exp := float64(testStart.Add(24 * time.Hour).Unix())

	r := graph(t, f.p, "GET", path, f.p.Token(testPage, botID), nil)
	want := fmt.Sprintf(`{"data":[{"thread_owner":{"app_id":"%s","expiration":%.0f}}]}`, botID, exp)
	if got := mustJSON(t, r.body); r.status != 200 || got != want {
		t.Errorf("owner's view: %d %s, want %s", r.status, got, want)
	}
	// A non-default, non-owner app only learns that the thread is owned.
	r = graph(t, f.p, "GET", path, f.p.Token(testPage, deskID), nil)
	want = fmt.Sprintf(`{"data":[{"thread_owner":{"expiration":%.0f}}]}`, exp)
	if got := mustJSON(t, r.body); got != want {
		t.Errorf("other app's view: %s, want %s", got, want)
	}
	// Extending moves the expiration.
	r = graph(t, f.p, "POST", "/v25.0/"+testPage+"/extend_thread_control", f.p.Token(testPage, botID),
		map[string]any{"recipient": recipient(alice), "duration": 172800})
	if r.status != 200 {
		t.Fatalf("extend: %d %v", r.status, r.body)
	}
	r = graph(t, f.p, "GET", path, f.p.Token(testPage, botID), nil)
	want = fmt.Sprintf(`{"data":[{"thread_owner":{"app_id":"%s","expiration":%d}}]}`, botID, testStart.Add(48*time.Hour).Unix())
	if got := mustJSON(t, r.body); got != want {
		t.Errorf("after extend: %s, want %s", got, want)
	}

	if err := f.p.Release(botID, testPage, alice, ""); err != nil {
		t.Fatal(err)
	}
	r = graph(t, f.p, "GET", path, f.p.Token(testPage, botID), nil)
	if got := mustJSON(t, r.body); got != `{"data":[]}` {
		t.Errorf("idle: %s", got)
	}
	r = graph(t, f.p, "GET", "/v25.0/"+testPage+"/thread_owner?recipient="+bob, f.p.Token(testPage, botID), nil)
	if code, sub := r.errCode(); code != 100 || sub != 2018001 {
		t.Errorf("unknown user: %v", r.body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGraphRequestValidation(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	send := map[string]any{"recipient": recipient(alice), "messaging_type": "RESPONSE", "message": map[string]any{"text": "x"}}
	tok := f.p.Token(testPage, botID)
	tests := []struct {
		name, method, path, token string
		body                      any
		status, code, subcode     int
	}{
		{"missing token", "POST", "/v25.0/me/messages", "", send, 400, 190, 0},
		{"unknown token", "POST", "/v25.0/me/messages", "tok-nope", send, 400, 190, 0},
		{"wrong version", "POST", "/v24.0/me/messages", tok, send, 400, 2500, 0},
		{"other page", "POST", "/v25.0/123/messages", tok, send, 400, 100, 33},
		{"unknown edge", "POST", "/v25.0/me/feed", tok, send, 400, 100, 0},
		{"wrong method", "GET", "/v25.0/me/messages", tok, nil, 400, 100, 33},
		{"no recipient", "POST", "/v25.0/me/messages", tok, map[string]any{"messaging_type": "RESPONSE", "message": map[string]any{"text": "x"}}, 400, 100, 0},
		{"no messaging_type", "POST", "/v25.0/me/messages", tok, map[string]any{"recipient": recipient(alice), "message": map[string]any{"text": "x"}}, 400, 100, 0},
		{"empty message", "POST", "/v25.0/me/messages", tok, map[string]any{"recipient": recipient(alice), "messaging_type": "RESPONSE", "message": map[string]any{}}, 400, 100, 0},
		{"bad json", "POST", "/v25.0/me/messages", tok, "not an object", 400, 100, 0},
		{"ok", "POST", "/v25.0/me/messages", tok, send, 200, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := graph(t, f.p, tt.method, tt.path, tt.token, tt.body)
			code, sub := r.errCode()
			if r.status != tt.status || code != tt.code || sub != tt.subcode {
				t.Errorf("got %d %d/%d, want %d %d/%d: %v", r.status, code, sub, tt.status, tt.code, tt.subcode, r.body)
			}
		})
	}
}

func TestBearerTokenAndFormParameters(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	form := `recipient={"id":"` + alice + `"}&messaging_type=RESPONSE&message={"text":"form post"}`
	req, err := http.NewRequestWithContext(testCtx(t), "POST", f.p.URL()+"/v25.0/"+testPage+"/messages", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+f.p.Token(testPage, botID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("form send with bearer token: HTTP %d", resp.StatusCode)
	}
	lines := f.p.Transcript(testPage, alice)
	if last := lines[len(lines)-1]; last.Text != "form post" {
		t.Errorf("last line = %+v", last)
	}
}

func TestFailNextInjectsGraphErrors(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	f.p.FailNext("pass_thread_control", 503, 2, 0, 2)
	body := map[string]any{"recipient": recipient(alice), "target_app_id": inboxID}
	tok := f.p.Token(testPage, botID)
	for i := 0; i < 2; i++ {
		r := graph(t, f.p, "POST", "/v25.0/me/pass_thread_control", tok, body)
		if code, _ := r.errCode(); r.status != 503 || code != 2 {
			t.Fatalf("attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if got := f.p.Owner(testPage, alice); got != botID {
		t.Fatalf("an injected failure changed the owner to %q", got)
	}
	if r := graph(t, f.p, "POST", "/v25.0/me/pass_thread_control", tok, body); r.status != 200 {
		t.Fatalf("third attempt: %d %v", r.status, r.body)
	}
	if got := f.p.Owner(testPage, alice); got != inboxID {
		t.Errorf("owner = %q", got)
	}
	calls := f.p.Calls()
	if len(calls) != 3 || calls[0].Status != 503 || calls[0].Code != 2 || calls[2].Status != 200 {
		t.Errorf("calls = %+v", calls)
	}
}

func TestEchoBotRepliesThroughThePlatform(t *testing.T) {
	f := newFixture(t, botID)
	f.bot.OnEvent(EchoBot(f.p, botID))
	f.inbox.OnEvent(EchoBot(f.p, inboxID)) // only sees standby: must stay silent
	f.p.UserText(testPage, alice, "ping")
	f.flush(t) // the reply is queued while the bot handles "ping", so Flush waits for it
	f.p.UserPostback(testPage, alice, "Menu", "MENU")
	f.flush(t)
	wantEvents(t, "bot", f.bot, "messaging/text:ping messaging/echo:echo: ping@"+botID+
		" messaging/postback:Menu=MENU messaging/echo:you chose: MENU@"+botID)
	var sends []string
	for _, l := range f.p.Transcript(testPage, alice) {
		if l.Kind == KindSend {
			sends = append(sends, l.From+":"+l.Text)
		}
	}
	if got := strings.Join(sends, ","); got != botID+":echo: ping,"+botID+":you chose: MENU" {
		t.Errorf("sends = %s", got)
	}
}

func TestWebhooksWaitForAWebhookURL(t *testing.T) {
	bot := startReceiver(t, botSecret)
	p, err := Start(Options{
		Pages:      []string{testPage},
		DefaultApp: botID,
		Apps:       []AppSpec{{ID: botID, Secret: botSecret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.UserText(testPage, alice, "early")
	if err := p.Flush(testCtx(t)); err != nil {
		t.Fatalf("Flush must skip apps without a URL: %v", err)
	}
	if n := p.Pending(botID); n != 1 {
		t.Fatalf("pending = %d", n)
	}
	p.SetWebhook(botID, bot.URL())
	if err := p.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "bot", bot, "messaging/text:early")
}

func TestControlExpiresAfter24Hours(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi")
	if err := f.p.Pass(botID, testPage, alice, deskID, ""); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(23 * time.Hour)
	if got := f.p.Owner(testPage, alice); got != deskID {
		t.Fatalf("owner after 23h = %q", got)
	}
	f.clk.Advance(time.Hour)
	if got := f.p.Owner(testPage, alice); got != "" {
		t.Fatalf("owner after 24h = %q, want idle", got)
	}
	// The next message routes to the default app again.
	f.p.UserText(testPage, alice, "back")
	if got := f.p.Owner(testPage, alice); got != botID {
		t.Errorf("owner = %q", got)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	_, err := Start(Options{
		Pages:      []string{"1", "1"},
		DefaultApp: "9",
		Apps:       []AppSpec{{ID: "abc", Secret: ""}},
		RetryDelay: -1,
	})
	if err == nil {
		t.Fatal("Start accepted bad options")
	}
	for _, want := range []string{"duplicate page", "numeric", "Secret", "DefaultApp", "RetryDelay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestFlushReturnsWhenContextEnds(t *testing.T) {
	f := newFixture(t, botID)
	f.bot.SetFailing(500)
	f.p.UserText(testPage, alice, "hi")
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once delivery has demonstrably failed, so Flush must give up.
	if err := f.bot.WaitRefused(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := f.p.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Flush = %v, want context.Canceled", err)
	}
}

func TestEscapeNonASCII(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"plain"}`: `{"a":"plain"}`,
		`{"a":"ä"}`:     `{"a":"\u00e4"}`,
		`{"a":"€😀"}`:    `{"a":"\u20ac\ud83d\ude00"}`,
	} {
		if got := string(escapeNonASCII([]byte(in))); got != want {
			t.Errorf("escapeNonASCII(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestTemplateSendWithInlinePass(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "help")
	r := graph(t, f.p, "POST", "/v25.0/me/messages", f.p.Token(testPage, botID), map[string]any{
		"recipient":      recipient(alice),
		"messaging_type": "RESPONSE",
		"message": map[string]any{"attachment": map[string]any{
			"type":    "template",
			"payload": map[string]any{"template_type": "button", "text": "Connecting you", "buttons": []any{}},
		}},
		"thread_control": map[string]any{"control_type": "pass", "app_id": inboxID},
	})
	if r.status != 200 {
		t.Fatalf("send: %d %v", r.status, r.body)
	}
	f.flush(t)
	var got []string
	for _, l := range f.p.Transcript(testPage, alice) {
		got = append(got, l.Kind+":"+l.Text+"->"+l.Owner)
	}
	if want := "text:help->" + botID + " send:[template]->" + botID + " pass:->" + inboxID; strings.Join(got, " ") != want {
		t.Errorf("transcript = %s, want %s", strings.Join(got, " "), want)
	}
	wantEvents(t, "inbox", f.inbox, "standby/text:help standby/echo@"+botID+" messaging/pass_thread_control@"+inboxID)
	echo := f.bot.Events()[1]
	if echo.Kind != RecvEcho || !bytes.Contains(echo.Raw, []byte(`"attachments":[{`)) ||
		!bytes.Contains(echo.Raw, []byte(`"template_type":"button"`)) {
		t.Errorf("echo = %s (%s)", echo.Raw, echo.Kind)
	}
}
