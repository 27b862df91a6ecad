package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/signature"
)

// deliveryTimeout bounds one webhook POST. Meta asks receivers to answer
// within 5 seconds; a receiver slower than that counts as a failure.
const deliveryTimeout = 5 * time.Second

const (
	channelMessaging = "messaging"
	channelStandby   = "standby"
	channelChanges   = "changes"
)

// Event shapes sent to apps (reference section 4). Field order follows
// Meta's examples so captured bodies read like the documentation.

type idRef struct {
	ID string `json:"id"`
}

type event struct {
	Sender    *idRef         `json:"sender,omitempty"`
	Recipient *idRef         `json:"recipient,omitempty"`
	Timestamp int64          `json:"timestamp"`
	Message   *messageEvent  `json:"message,omitempty"`
	Postback  *postbackEvent `json:"postback,omitempty"`
	Pass      *passEvent     `json:"pass_thread_control,omitempty"`
	Take      *takeEvent     `json:"take_thread_control,omitempty"`
	Request   *requestEvent  `json:"request_thread_control,omitempty"`
}

type messageEvent struct {
	IsEcho bool `json:"is_echo,omitempty"`
	// AppID is a JSON number in echoes, as in Meta's echo example; Baton
	// must not assume ids are always strings.
	AppID       json.Number       `json:"app_id,omitempty"`
	Metadata    string            `json:"metadata,omitempty"`
	MID         string            `json:"mid"`
	Text        string            `json:"text,omitempty"`
	QuickReply  *quickReply       `json:"quick_reply,omitempty"`
	Attachments []json.RawMessage `json:"attachments,omitempty"`
}

type quickReply struct {
	Payload string `json:"payload"`
}

type postbackEvent struct {
	MID     string `json:"mid"`
	Title   string `json:"title"`
	Payload string `json:"payload,omitempty"`
}

type passEvent struct {
	NewOwnerAppID      string `json:"new_owner_app_id"`
	PreviousOwnerAppID string `json:"previous_owner_app_id,omitempty"` // absent when passed from idle
	Metadata           string `json:"metadata,omitempty"`
}

type takeEvent struct {
	PreviousOwnerAppID string `json:"previous_owner_app_id"`
	NewOwnerAppID      string `json:"new_owner_app_id"`
	Metadata           string `json:"metadata,omitempty"`
}

type requestEvent struct {
	RequestedOwnerAppID string `json:"requested_owner_app_id"`
	Metadata            string `json:"metadata,omitempty"`
}

type envelope struct {
	Object string  `json:"object"`
	Entry  []entry `json:"entry"`
}

type entry struct {
	ID        string   `json:"id"`
	Time      int64    `json:"time"`
	Messaging []*event `json:"messaging,omitempty"`
	Standby   []*event `json:"standby,omitempty"`
}

// delivery is one queued webhook POST for one app.
type delivery struct {
	body     []byte
	attempts int
}

// broadcastLocked delivers ev to every app: primary on messaging[], the
// others on standby[]. With primary == "" (zero-config, idle thread) every
// app gets it on messaging[].
func (p *Platform) broadcastLocked(page string, now time.Time, ev *event, primary string) {
	for _, id := range p.appOrder {
		if primary == "" || id == primary {
			p.enqueueEventLocked(id, page, now, channelMessaging, ev)
			continue
		}
		sb := ev
		if ev.Postback != nil && ev.Postback.Payload != "" {
			// Only the owner learns a postback's payload (reference 4.5, 4.11).
			cp := *ev
			pb := *ev.Postback
			pb.Payload = ""
			cp.Postback = &pb
			sb = &cp
		}
		p.enqueueEventLocked(id, page, now, channelStandby, sb)
	}
}

// enqueueEventLocked wraps ev in its own envelope and appends it to appID's
// outbox. It never blocks: delivery happens on the outbox goroutine.
func (p *Platform) enqueueEventLocked(appID, page string, now time.Time, channel string, ev *event) {
	a := p.apps[appID]
	if a == nil {
		return
	}
	body, err := webhookBody(p.objectOf(page), page, now, channel, ev)
	if err != nil {
		// Only possible with an invalid json.Number, which Start rules out.
		p.log.Error("marshal webhook", zap.String("app", appID), zap.Error(err))
		return
	}
	a.queue = append(a.queue, &delivery{body: body})
	wake(a.wake)
}

// runOutbox delivers a's webhooks one at a time, in order. The head of the
// queue stays there until it is acked with 200, which is what keeps later
// events from overtaking a failing one.
func (p *Platform) runOutbox(a *app) {
	defer p.wg.Done()
	log := p.log.With(zap.String("app", a.spec.ID))
	for {
		p.mu.Lock()
		var d *delivery
		url := a.url
		if len(a.queue) > 0 && url != "" {
			d = a.queue[0]
		}
		p.mu.Unlock()

		if d == nil {
			select {
			case <-a.wake:
				continue
			case <-p.done:
				return
			}
		}

		err := p.post(a, url, d.body)
		if err == nil {
			p.mu.Lock()
			a.queue[0] = nil
			a.queue = a.queue[1:]
			p.notifyLocked()
			p.mu.Unlock()
			continue
		}
		d.attempts++
		log.Debug("webhook delivery failed, will retry",
			zap.Int("attempt", d.attempts), zap.Duration("retry_in", p.retryDelay), zap.Error(err))
		// The retry wait uses real time, not the injected clock: a fake
		// clock that tests never advance would otherwise stall delivery.
		timer := time.NewTimer(p.retryDelay)
		select {
		case <-timer.C:
		case <-p.done:
			timer.Stop()
			return
		}
	}
}

// post sends one signed webhook. Any answer other than 200 is an error.
func (p *Platform) post(a *app, url string, body []byte) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	// Each app gets its copy signed with its own secret, with both the
	// current and the legacy header (reference section 2).
	req.Header.Set(signature.Header256, a.signer.Sign256(body))
	req.Header.Set(signature.Header1, a.signer.Sign1(body))
	req.SetBody(body)
	if err := p.client.DoTimeout(req, resp, deliveryTimeout); err != nil {
		return fmt.Errorf("post webhook to %s: %w", url, err)
	}
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return fmt.Errorf("post webhook to %s: HTTP %d", url, code)
	}
	return nil
}

// Flush waits until every app's outbox is empty, i.e. every webhook queued
// so far (and any queued while waiting, such as an in-process bot's reply)
// has been acked with 200. Apps without a webhook URL are skipped: their
// webhooks cannot be delivered until SetWebhook. It returns ctx's error if
// ctx ends first and ErrClosed if the platform is closed.
func (p *Platform) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		busy, pending := "", 0
		for _, id := range p.appOrder {
			if a := p.apps[id]; a.url != "" && len(a.queue) > 0 {
				busy, pending = id, len(a.queue)
				break
			}
		}
		changed := p.changed
		p.mu.Unlock()
		if busy == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: flush: %d webhook(s) to app %s not acked: %w", pending, busy, ctx.Err())
		case <-changed:
		}
	}
}

// Pending returns how many webhooks are queued (not yet acked) for appID.
func (p *Platform) Pending(appID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.apps[appID]; a != nil {
		return len(a.queue)
	}
	return 0
}

// escapeNonASCII rewrites every non-ASCII character of a JSON document as
// \uXXXX (surrogate pairs above U+FFFF). Meta signs that escaped form, so a
// receiver that re-serializes parsed JSON before checking the signature
// fails here as it would in production. Non-ASCII bytes can only occur
// inside JSON strings, so the rewrite is safe.
func escapeNonASCII(b []byte) []byte {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/4)
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			out = append(out, b[0])
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			out = appendU(appendU(out, r1), r2)
			continue
		}
		out = appendU(out, r)
	}
	return out
}

func appendU(out []byte, r rune) []byte {
	s := strconv.FormatInt(int64(r), 16)
	out = append(out, `\u`...)
	for i := len(s); i < 4; i++ {
		out = append(out, '0')
	}
	return append(out, s...)
}
