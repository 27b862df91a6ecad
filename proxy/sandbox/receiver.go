package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/signature"
)

// Received kinds.
const (
	RecvText       = "text"
	RecvQuickReply = "quick_reply"
	RecvPostback   = "postback"
	RecvEcho       = "echo"
	RecvPass       = "pass_thread_control"
	RecvTake       = "take_thread_control"
	RecvRequest    = "request_thread_control"
	RecvDelivery   = "delivery"
	RecvRead       = "read"
	RecvOther      = "other"
	// RecvChange is an item of entry[].changes[] (Channel "changes");
	// Text is its field.
	RecvChange = "change"
)

// Received is one webhook event recorded by a Receiver.
type Received struct {
	Channel string // "messaging" or "standby"
	Object  string
	Page    string // entry[].id
	User    string // the PSID: sender.id, or recipient.id for echoes; "" if none
	// Kind is "text", "quick_reply", "postback", "echo",
	// "pass_thread_control", "take_thread_control",
	// "request_thread_control", "delivery", "read" or "other".
	Kind    string
	Text    string // message text, postback title, or handover metadata
	Payload string // quick reply or postback payload
	MID     string
	AppID   string // echo app_id, or new owner / requested owner app id for handover events
	Raw     []byte // the event object's bytes as received; do not modify
	Body    []byte // the whole POST body; do not modify
	// DeliveryID is the event's id in Baton's forward.DeliveryHeader: the
	// header's i-th comma-separated id for the POST's i-th event; "" if
	// the POST had none.
	DeliveryID string
	// Sig256OK and Sig1OK report whether X-Hub-Signature-256 and the legacy
	// X-Hub-Signature verified. Sig256OK is always true for recorded events.
	Sig256OK, Sig1OK bool
}

// Receiver is a fake app's webhook endpoint (a fake bot or a fake agent
// app) on 127.0.0.1. It behaves like a careful real bot: it rejects a
// missing or wrong X-Hub-Signature-256 with 403, accepts everything else
// with 200, and records each event.
type Receiver struct {
	signer *signature.Signer
	ln     net.Listener
	srv    *fasthttp.Server
	url    string
	done   chan struct{}
	served chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	failing int
	refused int // POSTs answered with the SetFailing status
	events  []Received
	badSigs int
	hooks   []func(Received)
	changed chan struct{} // closed and replaced on each new event or refusal
}

// StartReceiver starts a receiver that checks signatures with secret.
func StartReceiver(secret string) (*Receiver, error) {
	if secret == "" {
		return nil, errors.New("sandbox: receiver needs an app secret")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen for receiver: %w", err)
	}
	r := &Receiver{
		signer:  signature.New([]byte(secret)),
		ln:      ln,
		url:     "http://" + ln.Addr().String() + "/webhook",
		done:    make(chan struct{}),
		served:  make(chan struct{}),
		changed: make(chan struct{}),
	}
	r.srv = &fasthttp.Server{
		Handler:      r.handle,
		Name:         "sandbox-receiver",
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  30 * time.Second,
		Logger:       discardLogger{},
	}
	go func() {
		defer close(r.served)
		_ = r.srv.Serve(ln) // returns nil on Shutdown; other errors end the receiver, seen as refused deliveries
	}()
	return r, nil
}

// URL is the webhook URL to give to the platform (or to Baton's bot config).
func (r *Receiver) URL() string { return r.url }

// SetFailing makes the receiver answer every POST with status and record
// nothing (status 0 = healthy again), to simulate an app that is down.
func (r *Receiver) SetFailing(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing = status
}

// Events returns a copy of all recorded events in arrival order.
func (r *Receiver) Events() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// EventsFor returns the recorded events of one user, in arrival order.
func (r *Receiver) EventsFor(user string) []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Received
	for _, ev := range r.events {
		if ev.User == user {
			out = append(out, ev)
		}
	}
	return out
}

// BadSignatures counts POSTs whose X-Hub-Signature-256 or X-Hub-Signature
// did not verify.
func (r *Receiver) BadSignatures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.badSigs
}

// WaitFor returns nil once cond(all events so far) is true. cond is
// re-evaluated on each new event; WaitFor returns ctx.Err() when ctx ends
// and an error if the receiver is closed first.
func (r *Receiver) WaitFor(ctx context.Context, cond func([]Received) bool) error {
	for {
		r.mu.Lock()
		evs := slices.Clone(r.events)
		changed := r.changed
		r.mu.Unlock()
		if cond(evs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return errors.New("sandbox: receiver closed")
		case <-changed:
		}
	}
}

// Refused counts POSTs answered with the SetFailing status.
func (r *Receiver) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// WaitRefused returns once at least n POSTs have been refused while
// failing, e.g. to know the sender really tried while the app was "down".
func (r *Receiver) WaitRefused(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, changed := r.refused, r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: %d of %d refusals: %w", got, n, ctx.Err())
		case <-r.done:
			return errors.New("sandbox: receiver closed")
		case <-changed:
		}
	}
}

// notifyLocked wakes WaitFor and WaitRefused callers.
func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// OnEvent registers fn to be called after each recorded event, outside the
// receiver's locks and before the POST is answered, so the sender's next
// delivery to this app waits for fn (like a bot that handles webhooks
// synchronously). fn may call Platform methods.
func (r *Receiver) OnEvent(fn func(Received)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, fn)
}

// Close stops the receiver. It is idempotent.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.srv.ShutdownWithContext(ctx); err != nil {
			r.closeErr = fmt.Errorf("sandbox: shut down receiver: %w", err)
		}
		// Shutdown does nothing if Serve has not registered the listener
		// yet (a Close right after StartReceiver); closing it ends Serve.
		_ = r.ln.Close()
		<-r.served
	})
	return r.closeErr
}

func (r *Receiver) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != "/webhook" {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsPost() {
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	r.mu.Lock()
	failing := r.failing
	r.mu.Unlock()
	if failing != 0 {
		r.mu.Lock()
		r.refused++
		r.notifyLocked()
		r.mu.Unlock()
		ctx.SetStatusCode(failing)
		return
	}

	// Copy: fasthttp reuses the request buffer after the handler returns.
	body := append([]byte(nil), ctx.PostBody()...)
	ok256 := r.signer.Verify256(body, ctx.Request.Header.Peek(signature.Header256))
	ok1 := r.signer.Verify1(body, ctx.Request.Header.Peek(signature.Header1))
	if !ok256 || !ok1 {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
	}
	if !ok256 {
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		return
	}
	evs, err := parseWebhook(body)
	if err != nil {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.SetBodyString(err.Error())
		return
	}
	var ids []string
	if h := ctx.Request.Header.Peek(forward.DeliveryHeader); len(h) > 0 {
		ids = strings.Split(string(h), ",")
	}
	for i := range evs {
		evs[i].Body = body
		evs[i].Sig256OK, evs[i].Sig1OK = ok256, ok1
		if i < len(ids) {
			evs[i].DeliveryID = ids[i]
		}
	}

	r.mu.Lock()
	r.events = append(r.events, evs...)
	hooks := slices.Clone(r.hooks)
	r.notifyLocked()
	r.mu.Unlock()

	for _, ev := range evs {
		for _, fn := range hooks {
			fn(ev)
		}
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBodyString("EVENT_RECEIVED")
}

// Incoming shapes, decoded leniently: ids may be strings or numbers.

type rxEnvelope struct {
	Object string `json:"object"`
	Entry  []struct {
		ID        flexID            `json:"id"`
		Messaging []json.RawMessage `json:"messaging"`
		Standby   []json.RawMessage `json:"standby"`
		Changes   []json.RawMessage `json:"changes"`
	} `json:"entry"`
}

type rxID struct {
	ID flexID `json:"id"`
}

type rxHandover struct {
	NewOwnerAppID       flexID `json:"new_owner_app_id"`
	RequestedOwnerAppID flexID `json:"requested_owner_app_id"`
	Metadata            string `json:"metadata"`
}

type rxEvent struct {
	Sender    *rxID `json:"sender"`
	Recipient *rxID `json:"recipient"`
	Message   *struct {
		IsEcho     bool   `json:"is_echo"`
		AppID      flexID `json:"app_id"`
		MID        string `json:"mid"`
		Text       string `json:"text"`
		QuickReply *struct {
			Payload string `json:"payload"`
		} `json:"quick_reply"`
	} `json:"message"`
	Postback *struct {
		MID     string `json:"mid"`
		Title   string `json:"title"`
		Payload string `json:"payload"`
	} `json:"postback"`
	Pass     *rxHandover     `json:"pass_thread_control"`
	Take     *rxHandover     `json:"take_thread_control"`
	Request  *rxHandover     `json:"request_thread_control"`
	Delivery json.RawMessage `json:"delivery"`
	Read     json.RawMessage `json:"read"`
}

// parseWebhook splits a webhook body into its events, in order. Only a body
// that is not an envelope at all is an error; an event that cannot be read
// is recorded with Kind "other".
func parseWebhook(body []byte) ([]Received, error) {
	var env rxEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("sandbox: parse webhook envelope: %w", err)
	}
	var out []Received
	for _, e := range env.Entry {
		for _, raw := range e.Messaging {
			out = append(out, classify(channelMessaging, env.Object, string(e.ID), raw))
		}
		for _, raw := range e.Standby {
			out = append(out, classify(channelStandby, env.Object, string(e.ID), raw))
		}
		for _, raw := range e.Changes {
			var c struct {
				Field string `json:"field"`
			}
			_ = json.Unmarshal(raw, &c) // a change that cannot be read keeps no field
			out = append(out, Received{Channel: channelChanges, Object: env.Object, Page: string(e.ID), Kind: RecvChange, Text: c.Field, Raw: raw})
		}
	}
	return out, nil
}

func classify(channel, object, page string, raw []byte) Received {
	r := Received{Channel: channel, Object: object, Page: page, Kind: RecvOther, Raw: raw}
	var ev rxEvent
	if json.Unmarshal(raw, &ev) != nil {
		return r
	}
	if ev.Sender != nil {
		r.User = string(ev.Sender.ID)
	}
	switch {
	case ev.Message != nil && ev.Message.IsEcho:
		r.Kind = RecvEcho
		r.User = ""
		if ev.Recipient != nil { // echoes go from the Page to the user
			r.User = string(ev.Recipient.ID)
		}
		r.AppID, r.MID, r.Text = string(ev.Message.AppID), ev.Message.MID, ev.Message.Text
	case ev.Message != nil:
		r.MID, r.Text = ev.Message.MID, ev.Message.Text
		switch {
		case ev.Message.QuickReply != nil:
			r.Kind, r.Payload = RecvQuickReply, ev.Message.QuickReply.Payload
		case ev.Message.Text != "":
			r.Kind = RecvText
		}
	case ev.Postback != nil:
		r.Kind = RecvPostback
		r.MID, r.Text, r.Payload = ev.Postback.MID, ev.Postback.Title, ev.Postback.Payload
	case ev.Pass != nil:
		r.Kind, r.AppID, r.Text = RecvPass, string(ev.Pass.NewOwnerAppID), ev.Pass.Metadata
	case ev.Take != nil:
		r.Kind, r.AppID, r.Text = RecvTake, string(ev.Take.NewOwnerAppID), ev.Take.Metadata
	case ev.Request != nil:
		r.Kind, r.AppID, r.Text = RecvRequest, string(ev.Request.RequestedOwnerAppID), ev.Request.Metadata
	case len(ev.Delivery) > 0:
		r.Kind = RecvDelivery
	case len(ev.Read) > 0:
		r.Kind = RecvRead
	}
	return r
}

// EchoBot returns an OnEvent hook that makes appID behave like a trivial
// bot: every text or quick reply it receives on messaging[] is answered
// with "echo: <text>", every postback with "you chose: <payload>". Standby
// events are ignored, as a bot that does not own the thread must not reply.
// Send errors (for example after losing control) are only logged.
func EchoBot(p *Platform, appID string) func(Received) {
	return func(ev Received) {
		if ev.Channel != channelMessaging {
			return
		}
		var reply string
		switch ev.Kind {
		case RecvText, RecvQuickReply:
			reply = "echo: " + ev.Text
		case RecvPostback:
			reply = "you chose: " + ev.Payload
		default:
			return
		}
		// Send only queues webhooks, so calling it while the platform
		// waits for this POST's answer cannot deadlock.
		if _, err := p.Send(appID, ev.Page, ev.User, reply); err != nil {
			p.log.Debug("echo bot reply failed", zap.String("app", appID), zap.Error(err))
		}
	}
}

// discardLogger silences fasthttp's connection-level messages.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
