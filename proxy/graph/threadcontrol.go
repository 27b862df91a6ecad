package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"net/http"
)

// MaxExtendDuration is the longest extension extend_thread_control accepts.
const MaxExtendDuration = 7 * 24 * time.Hour

// ThreadOwner is the answer of the thread_owner edge.
type ThreadOwner struct {
	// AppID owns the thread. It is empty when the thread is idle, and also
	// when the caller may only see the expiration (neither owner nor
	// default app).
	AppID string
	// Expiration is when control lapses; zero when not reported.
	Expiration time.Time
	// Idle is true when the thread has no owner (empty data).
	Idle bool
}

// threadControlBody is the JSON body of the thread-control edges.
type threadControlBody struct {
	Recipient   recipientID `json:"recipient"`
	TargetAppID string      `json:"target_app_id,omitempty"`
	Metadata    string      `json:"metadata,omitempty"`
	Duration    int64       `json:"duration,omitempty"`
}

type recipientID struct {
	ID string `json:"id"`
}

// PassThreadControl passes the user's thread on page to targetAppID; an
// empty targetAppID is omitted, which passes to the page's default app.
func (c *Client) PassThreadControl(ctx context.Context, page, user, targetAppID, metadata string) error {
	return c.threadControl(ctx, "pass_thread_control", page, user, threadControlBody{TargetAppID: targetAppID, Metadata: metadata})
}

// TakeThreadControl takes control of the user's thread on page.
func (c *Client) TakeThreadControl(ctx context.Context, page, user, metadata string) error {
	return c.threadControl(ctx, "take_thread_control", page, user, threadControlBody{Metadata: metadata})
}

// ReleaseThreadControl releases control of the user's thread on page,
// leaving it idle.
func (c *Client) ReleaseThreadControl(ctx context.Context, page, user, metadata string) error {
	return c.threadControl(ctx, "release_thread_control", page, user, threadControlBody{Metadata: metadata})
}

// RequestThreadControl asks the owner of the user's thread on page for
// control (zero-config routing only).
func (c *Client) RequestThreadControl(ctx context.Context, page, user, metadata string) error {
	return c.threadControl(ctx, "request_thread_control", page, user, threadControlBody{Metadata: metadata})
}

// ExtendThreadControl extends the caller's control of the user's thread on
// page by d, sent in whole seconds (rounded up); d must be between 1s and
// MaxExtendDuration.
func (c *Client) ExtendThreadControl(ctx context.Context, page, user string, d time.Duration) error {
	const endpoint = "extend_thread_control"
	if d <= 0 || d > MaxExtendDuration {
		return errorf(endpoint, "duration %s out of range (0, %s]", d, MaxExtendDuration)
	}
	secs := int64((d + time.Second - 1) / time.Second)
	return c.threadControl(ctx, endpoint, page, user, threadControlBody{Duration: secs})
}

func (c *Client) threadControl(ctx context.Context, endpoint, page, user string, body threadControlBody) error {
	if user == "" {
		return errorf(endpoint, "empty user id")
	}
	body.Recipient.ID = user
	b, err := json.Marshal(body)
	if err != nil {
		return errorf(endpoint, "encoding request: %w", err)
	}
	return c.do(ctx, call{
		method:   http.MethodPost,
		page:     page,
		endpoint: endpoint,
		user:     user,
		body:     b,
	}, decodeSuccess)
}

// decodeSuccess accepts {"success":true} and, as take_thread_control is
// documented to answer both ways, {"data":[{"thread_owner":{...}}]}.
func decodeSuccess(body []byte) error {
	var r struct {
		Success *bool             `json:"success"`
		Data    []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("unexpected response %s: %w", snippet(string(body)), err)
	}
	switch {
	case r.Success != nil && *r.Success:
		return nil
	case r.Success == nil && len(r.Data) > 0:
		return nil
	}
	return fmt.Errorf("unexpected response %s", snippet(string(body)))
}

// ThreadOwner asks which app controls the user's thread on page.
func (c *Client) ThreadOwner(ctx context.Context, page, user string) (ThreadOwner, error) {
	const endpoint = "thread_owner"
	if user == "" {
		return ThreadOwner{}, errorf(endpoint, "empty user id")
	}
	var owner ThreadOwner
	err := c.do(ctx, call{
		method:   http.MethodGet,
		page:     page,
		endpoint: endpoint,
		user:     user,
		query:    url.Values{"recipient": {user}},
	}, func(body []byte) error {
		var r struct {
			Data *[]struct {
				ThreadOwner *struct {
					AppID      flexString `json:"app_id"`
					Expiration flexString `json:"expiration"`
				} `json:"thread_owner"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("unexpected response %s: %w", snippet(string(body)), err)
		}
		if r.Data == nil {
			return fmt.Errorf("unexpected response %s: no data", snippet(string(body)))
		}
		var o ThreadOwner
		for _, d := range *r.Data {
			if d.ThreadOwner == nil {
				continue
			}
			o.AppID = string(d.ThreadOwner.AppID)
			if exp := string(d.ThreadOwner.Expiration); exp != "" {
				secs, err := strconv.ParseInt(exp, 10, 64)
				if err != nil {
					f, ferr := strconv.ParseFloat(exp, 64)
					if ferr != nil || f < 0 || f > 1e12 {
						return fmt.Errorf("unexpected expiration %q", exp)
					}
					secs = int64(f)
				}
				if secs > 0 {
					o.Expiration = time.Unix(secs, 0).UTC()
				}
			}
			owner = o
			return nil
		}
		owner = ThreadOwner{Idle: true}
		return nil
	})
	if err != nil {
		return ThreadOwner{}, err
	}
	return owner, nil
}

// flexString decodes a JSON string or number (Meta sends ids both ways) as
// its text; null decodes as "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("want a string or a number")
	}
	*f = flexString(n.String())
	return nil
}
