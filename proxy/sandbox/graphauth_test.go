package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// graphAnswer is one raw answer of the platform's Graph API.
type graphAnswer struct {
	status int
	header http.Header
	err    errorFields // zero on success
}

// rawGraph calls the platform's Graph API as a client of its own would:
// method, path under the version, the Authorization header (none when
// empty), query parameters and a JSON body (none when empty).
func rawGraph(t *testing.T, p *Platform, method, path, auth string, query url.Values, body string) graphAnswer {
	t.Helper()
	u := p.URL() + "/" + p.Version() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := graphAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var env errorEnvelope
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("error answer %s is not Meta's shape: %v", raw, err)
		}
		a.err = env.Error
	}
	return a
}

func ownerQuery(extra ...string) url.Values {
	q := url.Values{"recipient": {alice}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

// The page token is taken from "Authorization: Bearer"; a call without
// one, or with a token the platform never issued, is refused with 190.
func TestGraphTokenFromAuthorizationHeader(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi") // thread_owner needs a user it knows
	tok := f.p.Token(testPage, botID)
	path := "/" + testPage + "/thread_owner"

	if a := rawGraph(t, f.p, "GET", path, "Bearer "+tok, ownerQuery(), ""); a.status != 200 {
		t.Errorf("with the header: status %d %+v", a.status, a.err)
	}
	for name, auth := range map[string]string{"no header": "", "unknown token": "Bearer tok-nobody", "no scheme": tok} {
		a := rawGraph(t, f.p, "GET", path, auth, ownerQuery(), "")
		if a.status != 400 || a.err.Code != 190 || a.err.Type != "OAuthException" {
			t.Errorf("%s: status %d %+v, want 400 with code 190", name, a.status, a.err)
		}
	}
}

// An app with "Require App Secret" refuses calls without a proof, and any
// app refuses a wrong one, with Meta's code 100 and wording.
func TestGraphAppSecretProof(t *testing.T) {
	p, err := Start(Options{
		Pages: []string{testPage}, DefaultApp: botID,
		Apps: []AppSpec{
			{ID: botID, Secret: botSecret, RequireAppSecretProof: true},
			{ID: inboxID, Secret: inboxSecret},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	botTok, inboxTok := p.Token(testPage, botID), p.Token(testPage, inboxID)
	path := "/" + testPage + "/thread_owner"
	good := AppSecretProof(botTok, botSecret)
	wrongSecret := AppSecretProof(botTok, "not-the-secret")

	const (
		required = "API calls from the server require an appsecret_proof argument"
		invalid  = "Invalid appsecret_proof provided in the API argument"
	)
	cases := []struct {
		name       string
		auth       string
		query      url.Values
		method     string
		path, body string
		wantMsg    string // "" for success
	}{
		{"required, missing", "Bearer " + botTok, ownerQuery(), "GET", path, "", required},
		{"required, wrong secret", "Bearer " + botTok, ownerQuery("appsecret_proof", wrongSecret), "GET", path, "", invalid},
		{"required, not hex", "Bearer " + botTok, ownerQuery("appsecret_proof", "zz"), "GET", path, "", invalid},
		{"required, another token's", "Bearer " + botTok, ownerQuery("appsecret_proof", AppSecretProof(inboxTok, botSecret)), "GET", path, "", invalid},
		{"required, right in the query", "Bearer " + botTok, ownerQuery("appsecret_proof", good), "GET", path, "", ""},
		{"required, right in a JSON body", "Bearer " + botTok, nil, "POST", "/" + testPage + "/messages",
			`{"appsecret_proof":"` + good + `","recipient":{"id":"` + alice + `"},"messaging_type":"RESPONSE","sender_action":"typing_on"}`, ""},
		{"not required, missing", "Bearer " + inboxTok, ownerQuery(), "GET", path, "", ""},
		{"not required, wrong", "Bearer " + inboxTok, ownerQuery("appsecret_proof", AppSecretProof(inboxTok, botSecret)), "GET", path, "", invalid},
		{"not required, right", "Bearer " + inboxTok, ownerQuery("appsecret_proof", AppSecretProof(inboxTok, inboxSecret)), "GET", path, "", ""},
	}
	p.UserText(testPage, alice, "hi") // the Send API needs a user it knows
	for _, tc := range cases {
		a := rawGraph(t, p, tc.method, tc.path, tc.auth, tc.query, tc.body)
		switch {
		case tc.wantMsg == "" && a.status != 200:
			t.Errorf("%s: status %d %+v, want success", tc.name, a.status, a.err)
		case tc.wantMsg != "" && (a.status != 400 || a.err.Code != 100 || a.err.Message != tc.wantMsg ||
			a.err.Type != "GraphMethodException" || a.err.FBTraceID == ""):
			t.Errorf("%s: status %d %+v, want 400, code 100, %q", tc.name, a.status, a.err, tc.wantMsg)
		}
	}
}

// Usage headers carry what the test set, per page for the business use
// case, and stop when it is cleared.
func TestGraphUsageHeaders(t *testing.T) {
	f := newFixture(t, botID)
	f.p.UserText(testPage, alice, "hi") // thread_owner needs a user it knows
	auth := "Bearer " + f.p.Token(testPage, botID)
	path := "/" + testPage + "/thread_owner"

	a := rawGraph(t, f.p, "GET", path, auth, ownerQuery(), "")
	if a.header.Get("X-App-Usage") != "" || a.header.Get("X-Business-Use-Case-Usage") != "" {
		t.Errorf("usage headers before any was set: %v", a.header)
	}

	f.p.SetAppUsage(&Usage{CallCount: 85, TotalTime: 12, TotalCPUTime: 7})
	f.p.SetBusinessUsage(testPage, &Usage{CallCount: 40, TotalTime: 101, TotalCPUTime: 3, RegainMinutes: 9})
	f.p.SetBusinessUsage("another-page", &Usage{CallCount: 99})
	a = rawGraph(t, f.p, "GET", path, auth, ownerQuery(), "")
	var app map[string]int
	if err := json.Unmarshal([]byte(a.header.Get("X-App-Usage")), &app); err != nil {
		t.Fatalf("X-App-Usage %q: %v", a.header.Get("X-App-Usage"), err)
	}
	if app["call_count"] != 85 || app["total_time"] != 12 || app["total_cputime"] != 7 {
		t.Errorf("X-App-Usage = %v", app)
	}
	var buc map[string][]map[string]any
	if err := json.Unmarshal([]byte(a.header.Get("X-Business-Use-Case-Usage")), &buc); err != nil {
		t.Fatalf("X-Business-Use-Case-Usage %q: %v", a.header.Get("X-Business-Use-Case-Usage"), err)
	}
	entries := buc[testPage]
	if len(buc) != 1 || len(entries) != 1 || entries[0]["type"] != "messenger" || entries[0]["call_count"] != float64(40) ||
		entries[0]["total_time"] != float64(101) || entries[0]["estimated_time_to_regain_access"] != float64(9) {
		t.Errorf("X-Business-Use-Case-Usage = %v", buc)
	}
	// A refusal carries them too, as Meta's throttled answers do.
	if a := rawGraph(t, f.p, "GET", path, "Bearer "+f.p.Token(testPage, botID), url.Values{}, ""); a.status != 400 ||
		a.header.Get("X-App-Usage") == "" {
		t.Errorf("refused call: status %d, headers %v", a.status, a.header)
	}

	f.p.SetAppUsage(nil)
	f.p.SetBusinessUsage(testPage, nil)
	a = rawGraph(t, f.p, "GET", path, auth, ownerQuery(), "")
	if a.header.Get("X-App-Usage") != "" || a.header.Get("X-Business-Use-Case-Usage") != "" {
		t.Errorf("usage headers after clearing: %v", a.header)
	}
}
