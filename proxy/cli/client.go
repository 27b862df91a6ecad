package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/state"
)

// DefaultAdmin is where a Baton's admin API listens unless admin.listen
// says otherwise.
const DefaultAdmin = "http://127.0.0.1:9090"

// maxErrorBody bounds how much of an error answer is read: enough for
// {"error": ...} and a list of policy problems.
const maxErrorBody = 1 << 20

// Client talks to a running Baton's admin API (v1). The token, when set,
// goes in the Authorization header of every request and nowhere else: it
// is never part of an error or of what the commands print.
type Client struct {
	Base  *url.URL     // the admin listener, e.g. http://127.0.0.1:9090
	Token string       // admin.token; "" when the admin API has none
	HTTP  *http.Client // default: http.DefaultClient
}

// requestTimeout bounds each call other than a backup, which takes as
// long as the database takes to stream.
const requestTimeout = 30 * time.Second

// NewClient checks the admin address and returns a client for it. A bare
// host:port is taken as http://host:port.
func NewClient(admin, token string) (*Client, error) {
	if admin == "" {
		admin = DefaultAdmin
	}
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	u, err := url.Parse(admin)
	if err != nil {
		return nil, fmt.Errorf("%w: --admin %q: %v", ErrUsage, admin, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: --admin %q: want http://HOST:PORT or https://HOST:PORT", ErrUsage, admin)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: --admin: give the token with --token or BATON_ADMIN_TOKEN, not in the URL", ErrUsage)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: --admin %q: want the listener's address, without a query", ErrUsage, admin)
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), strings.TrimRight(u.RawPath, "/")
	return &Client{Base: u, Token: token}, nil
}

// APIError is an answer of the admin API other than success.
type APIError struct {
	Status   int      // the HTTP status
	Message  string   // its "error" field, or the start of the body
	Problems []string // for a refused reload: file:line:col: message
}

func (e *APIError) Error() string {
	var b strings.Builder
	switch e.Status {
	case http.StatusUnauthorized:
		// The token is never echoed, only where one comes from.
		b.WriteString("the admin API refused the request (401): give admin.token with --token or BATON_ADMIN_TOKEN")
		if e.Message != "" {
			b.WriteString(" (" + e.Message + ")")
		}
	default:
		fmt.Fprintf(&b, "%s (%d %s)", e.Message, e.Status, http.StatusText(e.Status))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  " + p)
	}
	return b.String()
}

// ErrNotFound is wrapped by the APIError of a 404, for errors.Is.
var ErrNotFound = errors.New("not found")

// Is lets errors.Is(err, ErrNotFound) find a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// endpoint is the URL of path, already escaped (threadPath), with query.
func (c *Client) endpoint(path string, query url.Values) string {
	s := c.Base.String() + path
	if q := query.Encode(); q != "" {
		s += "?" + q
	}
	return s
}

// request sends one request to path (with query, when not nil) and returns
// the response when its status is one of ok (any status when ok is
// empty); otherwise the answer is turned into an *APIError and the body
// closed. body, when not nil, is sent as JSON.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body any, ok ...int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), rd)
	if err != nil {
		return nil, fmt.Errorf("admin API request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error names the method and URL, which hold no secret.
		return nil, fmt.Errorf("admin API at %s: %w", c.Base.Redacted(), unwrapURLError(err))
	}
	if len(ok) == 0 {
		return resp, nil
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

// unwrapURLError drops the "Get "http://...": " that *url.Error puts
// before the cause, since the caller names the admin address already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var body struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	// Printed on a terminal: one line each, control characters out.
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message = oneLine(body.Error, 500)
		for _, p := range body.Problems {
			e.Problems = append(e.Problems, oneLine(p, 500))
		}
	} else {
		e.Message = oneLine(string(data), 200)
		if e.Message == "" {
			e.Message = "no explanation given"
		}
	}
	return e
}

// getJSON GETs path and decodes a 200 answer into v.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.request(ctx, http.MethodGet, path, query, nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp.Body, path, v)
}

// postJSON POSTs body to path and decodes a 200 or 202 answer into v.
func (c *Client) postJSON(ctx context.Context, path string, body, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.request(ctx, http.MethodPost, path, nil, body, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp.Body, path, v)
}

func decodeBody(r io.Reader, path string, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("reading the answer of %s: %w", path, err)
	}
	return nil
}

// threadPath is the API path of a thread; the ids are escaped, so a user
// id such as "ref:abc" or an empty one stays one path segment.
func threadPath(k state.ThreadKey) string {
	return "/api/v1/threads/" + url.PathEscape(k.Page) + "/" + url.PathEscape(k.User)
}

// Health is the answer of /-/healthy or /-/ready.
type Health struct {
	Status int           // the HTTP status
	Ready  bool          `json:"ready"`
	Checks []HealthCheck `json:"checks"`
}

// HealthCheck is one of the readiness checks.
type HealthCheck struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Health asks /-/healthy, or /-/ready when ready is set. Any answer is
// returned, whatever its status; only an unreachable Baton is an error.
func (c *Client) Health(ctx context.Context, ready bool) (Health, error) {
	path := "/-/healthy"
	if ready {
		path = "/-/ready"
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.request(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	h := Health{Status: resp.StatusCode}
	if ready {
		// A 503 carries the failing checks; a body that is not the
		// contract's still leaves the status to judge by.
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&h)
	}
	return h, nil
}

// ThreadQuery filters GET /api/v1/threads.
type ThreadQuery struct {
	Owner       string // bot, idle, other, app:ID or an app name
	Page        string
	Tag         string
	IdleSince   string // RFC 3339 time or a duration (now minus it)
	DeadLetters bool   // only threads with dead letters
	Limit       int    // threads per request; 0: the server's default
	Cursor      string
}

func (q ThreadQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("owner", q.Owner)
	set("page", q.Page)
	set("tag", q.Tag)
	set("idle_since", q.IdleSince)
	set("cursor", q.Cursor)
	if q.DeadLetters {
		v.Set("dead_letters", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	return v
}

// ThreadList is one page of GET /api/v1/threads. Threads keeps each
// thread as the server sent it, so --json passes on every field.
type ThreadList struct {
	Threads    []json.RawMessage `json:"threads"`
	NextCursor string            `json:"next_cursor"`
}

// Threads lists threads, one page.
func (c *Client) Threads(ctx context.Context, q ThreadQuery) (ThreadList, error) {
	var l ThreadList
	err := c.getJSON(ctx, "/api/v1/threads", q.values(), &l)
	return l, err
}

// Thread fetches one thread; the raw answer comes back too, for --json.
// A thread Baton never saw is an error wrapping ErrNotFound.
func (c *Client) Thread(ctx context.Context, k state.ThreadKey) (admin.DetailView, json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.getJSON(ctx, threadPath(k), nil, &raw); err != nil {
		return admin.DetailView{}, nil, err
	}
	var d admin.DetailView
	if err := json.Unmarshal(raw, &d); err != nil {
		return admin.DetailView{}, nil, fmt.Errorf("reading thread %s: %w", k, err)
	}
	return d, raw, nil
}

// Operate asks Baton to take, pass or release a thread (op is "take",
// "pass" or "release"; to is the app for a pass). It returns once the
// operation is durably queued on the thread.
func (c *Client) Operate(ctx context.Context, op string, k state.ThreadKey, to, reason string) error {
	body := map[string]string{"reason": reason}
	if op == "pass" {
		body["to"] = to
	}
	var ans struct {
		Accepted bool `json:"accepted"`
	}
	if err := c.postJSON(ctx, threadPath(k)+"/"+op, body, &ans); err != nil {
		return err
	}
	if !ans.Accepted {
		return fmt.Errorf("%s %s: Baton did not accept it", op, k)
	}
	return nil
}

// DeadLetters lists dead letters, of one thread or (nil) of every thread.
// Each comes back decoded and as the server sent it, for --json.
func (c *Client) DeadLetters(ctx context.Context, thread *state.ThreadKey) ([]admin.DeadLetterView, []json.RawMessage, error) {
	var q url.Values
	if thread != nil {
		q = url.Values{"thread": {thread.String()}}
	}
	var l struct {
		DeadLetters []json.RawMessage `json:"dead_letters"`
	}
	if err := c.getJSON(ctx, "/api/v1/dead-letters", q, &l); err != nil {
		return nil, nil, err
	}
	dead := make([]admin.DeadLetterView, len(l.DeadLetters))
	for i, raw := range l.DeadLetters {
		if err := json.Unmarshal(raw, &dead[i]); err != nil {
			return nil, nil, fmt.Errorf("reading dead letters: %w", err)
		}
	}
	return dead, l.DeadLetters, nil
}

// ChangeDeadLetters replays (replay true) or discards dead letters: one
// thread's (seq 0: all of them), or every thread's when thread is nil.
// It returns what was done.
func (c *Client) ChangeDeadLetters(ctx context.Context, replay bool, thread *state.ThreadKey, seq uint64) ([]admin.DeadLetterView, error) {
	path := "/api/v1/dead-letters/discard"
	if replay {
		path = "/api/v1/dead-letters/replay"
	}
	var body any = map[string]bool{"all": true}
	if thread != nil {
		body = struct {
			Thread string `json:"thread"`
			Seq    uint64 `json:"seq,omitempty"`
		}{thread.String(), seq}
	}
	var ans struct {
		Done []admin.DeadLetterView `json:"done"`
	}
	err := c.postJSON(ctx, path, body, &ans)
	return ans.Done, err
}

// Backup streams a running Baton's backup (GET /api/v1/backup) into w and
// returns how many bytes it wrote. A stream cut short is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.request(ctx, http.MethodGet, "/api/v1/backup", nil, nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup cut short after %d bytes: %w", n, err)
	}
	return n, nil
}
