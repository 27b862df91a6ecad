package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
)

const otherPage = "200000000000002"

// startFaults is a platform with two pages and the bot's app on a fake
// clock, behind a Faults front.
func startFaults(t *testing.T) (*Platform, *Faults, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(testStart)
	bot := startReceiver(t, botSecret)
	p, err := Start(Options{
		Pages:      []string{testPage, otherPage},
		DefaultApp: botID,
		Apps:       []AppSpec{{ID: botID, Secret: botSecret, WebhookURL: bot.URL()}, {ID: deskID, Secret: deskSecret, CanTake: true}},
		Clock:      clk,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	f, err := p.StartFaults()
	if err != nil {
		t.Fatalf("StartFaults: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p, f, clk
}

// sendVia posts a text from the bot's app to user on page through the
// front at base, with net/http.
func sendVia(t *testing.T, p *Platform, base, page, user string) graphResp {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"recipient": recipient(user), "messaging_type": "RESPONSE", "message": map[string]any{"text": "hello"},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := base + "/v25.0/" + page + "/messages?access_token=" + p.Token(page, botID)
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", page, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := graphResp{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("body %q is not JSON: %v", raw, err)
	}
	return out
}

func TestFaultsRateLimitLastsOnTheClockForOnePage(t *testing.T) {
	p, f, clk := startFaults(t)
	p.UserText(testPage, alice, "hi")
	p.UserText(otherPage, alice, "hi")
	f.RateLimit(testPage, 30*time.Second)

	r := sendVia(t, p, f.URL(), testPage, alice)
	if code, sub := r.errCode(); r.status != 400 || code != 613 || sub != 0 {
		t.Fatalf("rate-limited page answered %d %v", r.status, r.body)
	}
	if r := sendVia(t, p, f.URL(), otherPage, alice); r.status != 200 {
		t.Fatalf("the other page answered %d %v during the limit", r.status, r.body)
	}
	clk.Advance(29 * time.Second)
	if r := sendVia(t, p, f.URL(), testPage, alice); r.status != 400 {
		t.Fatalf("limit lifted early: %d %v", r.status, r.body)
	}
	clk.Advance(time.Second)
	if r := sendVia(t, p, f.URL(), testPage, alice); r.status != 200 {
		t.Fatalf("after the limit: %d %v", r.status, r.body)
	}

	f.RateLimitWith(testPage, time.Minute, 4, 0)
	if code, _ := sendVia(t, p, f.URL(), testPage, alice).errCode(); code != 4 {
		t.Errorf("RateLimitWith answered code %d, want 4", code)
	}
	f.RateLimit(testPage, 0)
	if r := sendVia(t, p, f.URL(), testPage, alice); r.status != 200 {
		t.Errorf("after lifting the limit: %d %v", r.status, r.body)
	}

	// Faulted calls are recorded with the others and had no effect.
	var limited, sent int
	for _, c := range p.Calls() {
		switch {
		case c.Page == testPage && (c.Code == 613 || c.Code == 4):
			limited++
			if c.AppID != botID || c.Endpoint != "messages" || c.Status != 400 {
				t.Errorf("faulted call recorded as %+v", c)
			}
		case c.Page == testPage && c.Status == 200:
			sent++
		}
	}
	if limited != 3 || sent != 2 {
		t.Errorf("calls on the limited page: %d rate-limited, %d sent; want 3 and 2", limited, sent)
	}
	if n := countKind(p.Transcript(testPage, alice), KindSend); n != 2 {
		t.Errorf("transcript has %d sends, want 2", n)
	}
}

func TestFaultsRejectTokenUntilAccepted(t *testing.T) {
	p, f, clk := startFaults(t)
	p.UserText(testPage, alice, "hi")
	p.UserText(otherPage, alice, "hi")
	f.RejectToken(testPage, 463)
	f.RateLimit(testPage, time.Hour) // the token is checked first

	for i := 0; i < 2; i++ {
		r := sendVia(t, p, f.URL(), testPage, alice)
		if code, sub := r.errCode(); r.status != 400 || code != 190 || sub != 463 {
			t.Fatalf("rejected page answered %d %v", r.status, r.body)
		}
		clk.Advance(24 * time.Hour) // a rejection lasts until told otherwise; the limit ends meanwhile
	}
	if r := sendVia(t, p, f.URL(), otherPage, alice); r.status != 200 {
		t.Fatalf("the other page answered %d %v", r.status, r.body)
	}
	p.UserText(testPage, alice, "still there?") // control lapsed with the day that passed
	f.AcceptToken(testPage)
	if r := sendVia(t, p, f.URL(), testPage, alice); r.status != 200 {
		t.Fatalf("after AcceptToken: %d %v", r.status, r.body)
	}
	if n := countKind(p.Transcript(testPage, alice), KindSend); n != 1 {
		t.Errorf("transcript has %d sends, want 1 (rejected calls have no effect)", n)
	}
}

func countKind(lines []Line, kind string) int {
	n := 0
	for _, l := range lines {
		if l.Kind == kind {
			n++
		}
	}
	return n
}
