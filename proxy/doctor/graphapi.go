package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/graph"
)

// The Graph API reads doctor makes, in one place so that a change on
// Meta's side is a change here. Paths are relative to the versioned root
// ({base_url}/{version}); the page token goes in the Authorization header,
// never in the URL, so no error that quotes a URL can carry it.
const (
	// tokenFields identifies the token's own Page: /me is the Page a Page
	// token belongs to.
	tokenFields = "id,name"
	// featureField is the Page's messaging feature status (reference 5.1).
	featureField = "messaging_feature_status"
	// edgeSubscribedApps lists the apps subscribed to the Page's webhooks
	// with their fields (Graph API reference: Page subscribed_apps).
	edgeSubscribedApps = "subscribed_apps"
	// edgeSecondaryReceivers lists the Page's other apps and answers only
	// the primary receiver, the role Conversation Routing's backward
	// compatibility gives the default app (reference 5.1).
	edgeSecondaryReceivers = "secondary_receivers"
	// edgeTake is probed for the take permission, with probeRecipient.
	edgeTake = "take_thread_control"
	// probeRecipient is no user's id: the probe can take no thread.
	probeRecipient = "0"
	probeMetadata  = "baton doctor: permission probe, no thread is taken"

	maxBody = 1 << 20
)

// graphError is an error answer of the Graph API:
// {"error":{"message","type","code","error_subcode"}}, or a status without
// that object (Code 0).
type graphError struct {
	Status  int
	Code    int
	Subcode int
	Message string
}

func (e *graphError) Error() string {
	switch {
	case e.Code != 0 && e.Subcode != 0:
		return fmt.Sprintf("%s (code %d/%d, HTTP %d)", e.Message, e.Code, e.Subcode, e.Status)
	case e.Code != 0:
		return fmt.Sprintf("%s (code %d, HTTP %d)", e.Message, e.Code, e.Status)
	default:
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
}

// tokenRejected reports a refused token: code 190 (invalid or expired)
// and the session codes 102, 463 and 467.
func (e *graphError) tokenRejected() bool {
	switch e.Code {
	case 190, 102, 463, 467:
		return true
	}
	return false
}

// permission reports a refusal for want of a right: code 10 and the
// permission codes 200 to 299. Other refusals (an unknown path or field,
// a bad parameter) say more about the request than about the set-up.
func (e *graphError) permission() bool { return e.Code == 10 || e.Code >= 200 && e.Code <= 299 }

// transient reports an answer that says nothing about the set-up: the
// API was down or rate-limited, so a check cannot conclude from it.
func (e *graphError) transient() bool {
	if e.Status >= 500 {
		return true
	}
	switch e.Code {
	case 1, 2, 4, 17, 32, 341, 613, 80001, 80006:
		return true
	}
	return false
}

// asGraphError returns err's Graph error, nil for a transport failure.
func asGraphError(err error) *graphError {
	var ge *graphError
	if errors.As(err, &ge) {
		return ge
	}
	return nil
}

// graphClient makes doctor's Graph API calls and notes the Date header of
// each answer for the clock check.
type graphClient struct {
	hc   *http.Client
	root string // {base_url}/{version}
	// appSecret, when set, adds appsecret_proof to every call, as Baton's
	// own client does with graph.appsecret_proof on.
	appSecret string
	timeout   time.Duration
	now       func() time.Time
	dates     []dateSample
}

// dateSample is an answer's Date header and the local time it arrived.
type dateSample struct {
	header string
	local  time.Time
}

// call sends one request and returns the body of a 2xx answer without an
// error object; anything else is a *graphError or a transport error.
func (g *graphClient) call(ctx context.Context, method, token, path string, query url.Values, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	u := g.root + "/" + path
	if g.appSecret != "" {
		query = maps.Clone(query)
		if query == nil {
			query = url.Values{}
		}
		query.Set("appsecret_proof", graph.AppSecretProof(token, g.appSecret))
	}
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	defer resp.Body.Close()
	if d := resp.Header.Get("Date"); d != "" {
		g.dates = append(g.dates, dateSample{header: d, local: g.now()})
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", transportError(err))
	}
	if ge := decodeError(resp.StatusCode, raw); ge != nil {
		return nil, ge
	}
	return raw, nil
}

// transportError drops the URL net/http puts in its errors: the cause is
// what the operator needs, and a URL may hold what should not be printed.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeError returns the Graph error an answer carries: an error object
// whatever the status, or a non-2xx status.
func decodeError(status int, body []byte) *graphError {
	var env struct {
		Error *struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
			Subcode int    `json:"error_subcode"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil {
		return &graphError{Status: status, Code: env.Error.Code, Subcode: env.Error.Subcode, Message: oneLine(env.Error.Message)}
	}
	if status >= 200 && status < 300 {
		return nil
	}
	return &graphError{Status: status, Message: "no Graph error in the answer: " + oneLine(string(body))}
}

// oneLine makes text from an answer fit one output line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "..."
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// graphID is an id the Graph API may send as a JSON string or a number
// (reference 4.1 warns of both); never a float64.
type graphID string

// UnmarshalJSON implements json.Unmarshaler.
func (id *graphID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*id = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("id: %w", err)
		}
		*id = graphID(s)
		return nil
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return fmt.Errorf("id %.40q: want a string or an integer", b)
		}
	}
	if len(b) == 0 {
		return errors.New("id: empty")
	}
	*id = graphID(b)
	return nil
}

// pageNode is GET /me?fields=id,name.
type pageNode struct {
	ID   graphID `json:"id"`
	Name string  `json:"name"`
}

// featureStatus is GET /{page}?fields=messaging_feature_status.
type featureStatus struct {
	Status *struct {
		HopV2        bool `json:"hop_v2"`
		MsgrMultiApp bool `json:"msgr_multi_app"`
	} `json:"messaging_feature_status"`
}

// routingOn reads Conversation Routing from the feature status:
// msgr_multi_app, Messenger's routing among several apps, is what a Page
// with a default app reports.
func (f featureStatus) routingOn() bool { return f.Status != nil && f.Status.MsgrMultiApp }

// subscribedApps is GET /{page}/subscribed_apps.
type subscribedApps struct {
	Data []struct {
		ID     graphID  `json:"id"`
		Name   string   `json:"name"`
		Fields []string `json:"subscribed_fields"`
	} `json:"data"`
}

// appList is GET /{page}/secondary_receivers?fields=id,name.
type appList struct {
	Data []struct {
		ID   graphID `json:"id"`
		Name string  `json:"name"`
	} `json:"data"`
}

// decode unmarshals a successful answer into v.
func decode(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	return nil
}

// clockSkew compares the local clock with the Graph API's Date headers:
// the result is local minus remote, from the first header that parses.
// Date has whole seconds, so a skew under a second or two means nothing.
func clockSkew(samples []dateSample) (skew time.Duration, ok bool) {
	for _, s := range samples {
		remote, err := http.ParseTime(s.header)
		if err != nil {
			continue
		}
		return s.local.Sub(remote), true
	}
	return 0, false
}
