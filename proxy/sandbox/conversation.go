package sandbox

import (
	"encoding/json"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// --- user actions ---

// UserText is the user typing text to page. It returns the message's mid,
// or "" if page is unknown or user is empty.
func (p *Platform) UserText(page, user, text string) string {
	return p.userAction(page, user, KindText, text, "")
}

// UserQuickReply is the user tapping a quick reply: a message event with
// text=title and quick_reply.payload.
func (p *Platform) UserQuickReply(page, user, title, payload string) string {
	return p.userAction(page, user, KindQuickReply, title, payload)
}

// UserPostback is the user tapping a postback button. Apps that receive it
// on standby get it without the payload, as on the real platform.
func (p *Platform) UserPostback(page, user, title, payload string) string {
	return p.userAction(page, user, KindPostback, title, payload)
}

// userWroteLocked returns the user's thread (made on first use) and its
// owner as the user writes, with what writing does to ownership.
func (p *Platform) userWroteLocked(page, user string, now time.Time) (*thread, string) {
	key := threadKey{page, user}
	t := p.threads[key]
	if t == nil {
		t = &thread{}
		p.threads[key] = t
	}
	owner := p.ownerLocked(t, now)
	switch {
	case owner == "" && p.defaultApp != "":
		// Conversation Routing: a message on an idle thread hands it to
		// the default app before anyone sees it.
		p.setOwnerLocked(t, p.defaultApp, now)
		owner = p.defaultApp
	case owner != "":
		// User activity keeps control alive for another 24 hours.
		if exp := now.Add(controlTTL); exp.After(t.expires) {
			t.expires = exp
		}
	}
	return t, owner
}

func (p *Platform) userAction(page, user, kind, text, payload string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pages[page] || user == "" {
		p.log.Warn("user action ignored: unknown page or empty user",
			zap.String("page", page), zap.String("user", user), zap.String("kind", kind))
		return ""
	}
	now := p.clk.Now()
	t, owner := p.userWroteLocked(page, user, now)

	mid := p.nextMIDLocked()
	ev := userEvent(page, user, now)
	switch kind {
	case KindText:
		ev.Message = &messageEvent{MID: mid, Text: text}
	case KindQuickReply:
		ev.Message = &messageEvent{MID: mid, Text: text, QuickReply: &quickReply{Payload: payload}}
	case KindPostback:
		ev.Postback = &postbackEvent{MID: mid, Title: text, Payload: payload}
	}
	t.lines = append(t.lines, Line{At: now, From: FromUser, Kind: kind, Text: text, Payload: payload, Owner: owner})
	// owner is "" only in zero-config mode on an idle thread: every app
	// then gets the event on messaging[].
	p.broadcastLocked(page, now, ev, owner)
	return mid
}

// --- app actions (shared by the in-process methods and the Graph API) ---

// outgoing is the content of a Send API call.
type outgoing struct {
	text         string
	attachment   []byte // raw JSON of message.attachment
	metadata     string
	senderAction string
	control      *threadControl // inline thread_control (Conversation Routing only)
}

// threadControl is the Send API's inline thread_control parameter.
type threadControl struct {
	controlType string // "pass" or "release"
	appID       string // pass target; "" = default app
}

// Send sends text to user as appID, with the same rules as POST /messages.
// It only queues webhooks, so it is safe to call from a Receiver callback.
func (p *Platform) Send(appID, page, user, text string) (mid string, err error) {
	mid, apiErr := p.send(appID, page, user, outgoing{text: text})
	if apiErr != nil {
		return "", apiErr
	}
	return mid, nil
}

// Pass passes control of the thread to targetAppID ("" = the default app),
// like POST /pass_thread_control.
func (p *Platform) Pass(appID, page, user, targetAppID, metadata string) error {
	return asError(p.pass(appID, page, user, targetAppID, metadata))
}

// Take takes control of the thread, like POST /take_thread_control.
func (p *Platform) Take(appID, page, user, metadata string) error {
	return asError(p.take(appID, page, user, metadata))
}

// Release makes the thread idle, like POST /release_thread_control.
func (p *Platform) Release(appID, page, user, metadata string) error {
	return asError(p.release(appID, page, user, metadata))
}

// Request asks for control, like POST /request_thread_control.
func (p *Platform) Request(appID, page, user, metadata string) error {
	return asError(p.request(appID, page, user, metadata))
}

// Extend extends appID's control of the thread by d, like POST
// /extend_thread_control (d is truncated to whole seconds).
func (p *Platform) Extend(appID, page, user string, d time.Duration) error {
	return asError(p.extend(appID, page, user, int64(d/time.Second)))
}

// asError avoids returning a typed nil *APIError inside a non-nil error.
func asError(e *APIError) error {
	if e == nil {
		return nil
	}
	return e
}

func (p *Platform) send(appID, page, user string, m outgoing) (string, *APIError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.checkCaller(appID, page); e != nil {
		return "", e
	}
	if e := validateOutgoing(m); e != nil {
		return "", e
	}
	if m.control != nil {
		if p.defaultApp == "" {
			return "", newParamError("thread_control is only supported when Conversation Routing is enabled")
		}
		if m.control.appID != "" && p.apps[m.control.appID] == nil {
			return "", errUnknownApp(m.control.appID)
		}
	}
	t, e := p.threadLocked(page, user)
	if e != nil {
		return "", e
	}
	now := p.clk.Now()
	owner := p.ownerLocked(t, now)
	if !p.maySend(appID, owner) {
		return "", errAnotherAppControls()
	}
	if m.control != nil && m.control.controlType == "pass" {
		target := m.control.appID
		if target == "" {
			target = p.defaultApp
		}
		if target == appID {
			return "", newParamError("thread_control cannot pass the thread to the sending app")
		}
	}
	if m.senderAction != "" {
		// typing_on / mark_seen: no message, no echo, no transcript line.
		return "", nil
	}

	mid := p.nextMIDLocked()
	msg := &messageEvent{IsEcho: true, AppID: json.Number(appID), Metadata: m.metadata, MID: mid, Text: m.text}
	lineText := m.text
	if len(m.attachment) > 0 {
		msg.Attachments = []json.RawMessage{m.attachment}
		lineText = "[attachment]"
		if attachmentType(m.attachment) == "template" {
			lineText = "[template]"
		}
	}
	// Echo: sender = Page, recipient = user.
	ev := &event{Sender: &idRef{ID: page}, Recipient: &idRef{ID: user}, Timestamp: now.UnixMilli(), Message: msg}
	t.lines = append(t.lines, Line{At: now, From: appID, Kind: KindSend, Text: lineText, Owner: owner})
	p.broadcastLocked(page, now, ev, appID)

	if m.control != nil {
		// The message and the handover happen in one request (reference 5.3).
		switch m.control.controlType {
		case "pass":
			if e := p.passLocked(t, appID, page, user, m.control.appID, "", now); e != nil {
				p.log.Warn("inline pass failed after send", zap.Error(e))
			}
		case "release":
			p.releaseLocked(t, appID, "", now)
		}
	}
	return mid, nil
}

// maySend applies the sending rule: the owner may send; on an idle thread
// only the default app may (anyone when there is no default app).
func (p *Platform) maySend(appID, owner string) bool {
	if owner != "" {
		return owner == appID
	}
	return p.defaultApp == "" || p.defaultApp == appID
}

func (p *Platform) pass(appID, page, user, target, metadata string) *APIError {
	return p.onThread(appID, page, user, func(t *thread, now time.Time) *APIError {
		return p.passLocked(t, appID, page, user, target, metadata, now)
	})
}

// passLocked moves control from caller (the owner, or anyone while idle) to
// target ("" = default app) and tells the new owner.
func (p *Platform) passLocked(t *thread, caller, page, user, target, metadata string, now time.Time) *APIError {
	owner := p.ownerLocked(t, now)
	if owner != "" && owner != caller {
		return errNotThreadOwner()
	}
	if target == "" {
		if p.defaultApp == "" {
			return newParamError("target_app_id is required: the Page has no default app")
		}
		target = p.defaultApp
	}
	if p.apps[target] == nil {
		return errUnknownApp(target)
	}
	// Passing to yourself would be a way to extend control, which the
	// platform forbids. On an idle thread it is allowed only in zero-config
	// mode (reference 5.4); with routing it would bypass the take permission.
	if target == caller && (owner == caller || p.defaultApp != "") {
		return newParamError("an app cannot pass thread control to itself")
	}
	p.setOwnerLocked(t, target, now)
	t.lines = append(t.lines, Line{At: now, From: caller, Kind: KindPass, Text: metadata, Owner: target})
	p.sendPassEventLocked(page, user, owner, target, metadata, now)
	return nil
}

func (p *Platform) sendPassEventLocked(page, user, previous, target, metadata string, now time.Time) {
	ev := userEvent(page, user, now)
	ev.Pass = &passEvent{NewOwnerAppID: target, PreviousOwnerAppID: previous, Metadata: metadata}
	p.enqueueEventLocked(target, page, now, channelMessaging, ev)
}

func (p *Platform) take(appID, page, user, metadata string) *APIError {
	// The caller's right to take is judged before the recipient, as its
	// token is: refusing the app does not depend on which thread it named.
	if a := p.apps[appID]; a != nil && p.pages[page] {
		if p.defaultApp == "" {
			return errTakeNeedsRouting()
		}
		if !a.spec.CanTake {
			return errNoTakePermission()
		}
	}
	return p.onThread(appID, page, user, func(t *thread, now time.Time) *APIError {
		owner := p.ownerLocked(t, now)
		if owner == appID {
			// Taking your own thread would extend control; use extend instead.
			return errAlreadyOwner()
		}
		p.setOwnerLocked(t, appID, now)
		t.lines = append(t.lines, Line{At: now, From: appID, Kind: KindTake, Text: metadata, Owner: appID})
		if owner == "" {
			return nil // taking an idle thread produces no webhook
		}
		ev := userEvent(page, user, now)
		ev.Take = &takeEvent{PreviousOwnerAppID: owner, NewOwnerAppID: appID, Metadata: metadata}
		p.enqueueEventLocked(owner, page, now, channelMessaging, ev)
		return nil
	})
}

func (p *Platform) release(appID, page, user, metadata string) *APIError {
	return p.onThread(appID, page, user, func(t *thread, now time.Time) *APIError {
		if p.ownerLocked(t, now) != appID {
			return errNotThreadOwner()
		}
		p.releaseLocked(t, appID, metadata, now)
		return nil
	})
}

// releaseLocked makes the thread idle. No webhook: nobody is told.
func (p *Platform) releaseLocked(t *thread, caller, metadata string, now time.Time) {
	t.owner = ""
	t.expires = time.Time{}
	t.lines = append(t.lines, Line{At: now, From: caller, Kind: KindRelease, Text: metadata})
}

// request asks the owner for control. Meta documents request_thread_control
// for zero-config Pages only; the sandbox also allows it with routing
// enabled so Baton's handling of request_thread_control webhooks can be
// tested on a routed Page.
func (p *Platform) request(appID, page, user, metadata string) *APIError {
	return p.onThread(appID, page, user, func(t *thread, now time.Time) *APIError {
		owner := p.ownerLocked(t, now)
		switch owner {
		case appID:
			return errAlreadyOwner()
		case "":
			// Idle: the first requester gets the thread and a pass webhook.
			p.setOwnerLocked(t, appID, now)
			t.lines = append(t.lines, Line{At: now, From: appID, Kind: KindRequest, Text: metadata, Owner: appID})
			p.sendPassEventLocked(page, user, "", appID, metadata, now)
			return nil
		}
		t.lines = append(t.lines, Line{At: now, From: appID, Kind: KindRequest, Text: metadata, Owner: owner})
		ev := userEvent(page, user, now)
		ev.Request = &requestEvent{RequestedOwnerAppID: appID, Metadata: metadata}
		p.enqueueEventLocked(owner, page, now, channelMessaging, ev)
		return nil
	})
}

func (p *Platform) extend(appID, page, user string, seconds int64) *APIError {
	d := time.Duration(seconds) * time.Second
	return p.onThread(appID, page, user, func(t *thread, now time.Time) *APIError {
		if seconds <= 0 || d > maxExtend {
			return newParamError("duration must be between 1 and " + strconv.Itoa(int(maxExtend/time.Second)) + " seconds")
		}
		if p.ownerLocked(t, now) != appID {
			return errNotThreadOwner()
		}
		t.expires = now.Add(d)
		return nil
	})
}

// threadOwner answers GET /thread_owner. Only the owner and the default app
// (everyone in zero-config mode) may see which app owns the thread; other
// apps only see the expiration (reference 5.1), which showApp reports.
func (p *Platform) threadOwner(appID, page, user string) (owner string, showApp bool, expires time.Time, e *APIError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.checkCaller(appID, page); e != nil {
		return "", false, time.Time{}, e
	}
	t, e := p.threadLocked(page, user)
	if e != nil {
		return "", false, time.Time{}, e
	}
	owner = p.ownerLocked(t, p.clk.Now())
	if owner == "" {
		return "", false, time.Time{}, nil
	}
	showApp = owner == appID || p.defaultApp == "" || p.defaultApp == appID
	return owner, showApp, t.expires, nil
}

// onThread runs fn with the lock held for a caller acting on an existing
// thread, after the checks every thread-control call shares.
func (p *Platform) onThread(appID, page, user string, fn func(t *thread, now time.Time) *APIError) *APIError {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.checkCaller(appID, page); e != nil {
		return e
	}
	t, e := p.threadLocked(page, user)
	if e != nil {
		return e
	}
	return fn(t, p.clk.Now())
}

// userEvent starts an event sent on behalf of user to page.
func userEvent(page, user string, now time.Time) *event {
	return &event{Sender: &idRef{ID: user}, Recipient: &idRef{ID: page}, Timestamp: now.UnixMilli()}
}

// --- state helpers (p.mu held) ---

// checkCaller plays the part of token validation for in-process calls.
func (p *Platform) checkCaller(appID, page string) *APIError {
	if p.apps[appID] == nil || !p.pages[page] {
		return errBadToken()
	}
	return nil
}

// threadLocked returns the thread, which exists once the user has written
// to the page; otherwise the user is unknown to the Page (100/2018001).
func (p *Platform) threadLocked(page, user string) (*thread, *APIError) {
	t := p.threads[threadKey{page, user}]
	if t == nil {
		return nil, errNoMatchingUser()
	}
	return t, nil
}

// ownerLocked returns the thread owner, first letting control lapse if it
// has expired (evaluated lazily against the injected clock).
func (p *Platform) ownerLocked(t *thread, now time.Time) string {
	if t.owner != "" && !now.Before(t.expires) {
		p.log.Debug("thread control expired", zap.String("owner", t.owner))
		t.owner = ""
		t.expires = time.Time{}
	}
	return t.owner
}

func (p *Platform) setOwnerLocked(t *thread, owner string, now time.Time) {
	t.owner = owner
	t.expires = now.Add(controlTTL)
}

func (p *Platform) nextMIDLocked() string {
	p.seq++
	return "m_" + p.midPrefix + "_" + strconv.FormatUint(p.seq, 10)
}

// notifyLocked wakes every Flush waiter.
func (p *Platform) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}
