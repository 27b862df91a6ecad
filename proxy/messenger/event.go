package messenger

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Channel is the array an event arrived in.
type Channel uint8

const (
	// Messaging events are for threads the receiving app owns.
	Messaging Channel = iota
	// Standby events are for threads another app owns; read-only for us.
	Standby
	// Changes are entry[].changes[]: the Page's (or Instagram account's)
	// feed, comments, mentions, lead forms. They concern no thread of
	// the handover protocol and go to the bot as they came.
	Changes
	channels = 3
)

func (c Channel) String() string {
	switch c {
	case Standby:
		return "standby"
	case Changes:
		return "changes"
	}
	return "messaging"
}

// Kind is what an event is, detected from which key is present (Meta does not
// name event types).
type Kind uint8

// Event kinds Baton distinguishes.
const (
	KindUnknown Kind = iota
	KindText         // message with text (or only attachments)
	KindQuickReply
	KindEcho
	KindPostback
	KindReferral
	KindOptin
	KindDelivery
	KindRead
	KindReaction
	KindEdit
	KindFeedback
	KindPassThreadControl
	KindTakeThreadControl
	KindRequestThreadControl
	KindAppRoles
	KindPolicyEnforcement
	KindAccountLinking
	// KindTimer is Baton's own event: a durable timer came due. It is never
	// forwarded to the bot. Text is the timer's kind.
	KindTimer
	// KindChange is an item of entry[].changes[]; Field is its "field".
	KindChange
)

var kindNames = [...]string{
	KindUnknown: "unknown", KindText: "message", KindQuickReply: "quick_reply", KindEcho: "echo",
	KindPostback: "postback", KindReferral: "referral", KindOptin: "optin", KindDelivery: "delivery",
	KindRead: "read", KindReaction: "reaction", KindEdit: "message_edit", KindFeedback: "messaging_feedback",
	KindPassThreadControl: "pass_thread_control", KindTakeThreadControl: "take_thread_control",
	KindRequestThreadControl: "request_thread_control", KindAppRoles: "app_roles",
	KindPolicyEnforcement: "policy_enforcement", KindAccountLinking: "account_linking",
	KindTimer: "baton_timer", KindChange: "change",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// IsHandover reports whether k is one of the messaging_handovers events.
func (k Kind) IsHandover() bool {
	return k == KindPassThreadControl || k == KindTakeThreadControl || k == KindRequestThreadControl
}

// Event is one item of entry[].messaging[] or entry[].standby[].
type Event struct {
	Object    string // "page" or "instagram"
	PageID    string // entry[].id
	EntryTime int64  // entry[].time, epoch ms
	Channel   Channel
	Raw       []byte // the event object exactly as received

	Kind      Kind
	UserID    string // PSID: sender.id, or recipient.id for echoes; "" when absent
	UserRef   string // optin.user_ref when there is no PSID
	MID       string
	Timestamp int64 // epoch ms, 0 when absent
	Text      string
	Payload   string // quick-reply or postback payload
	AppID     string // echo app_id; new owner (pass/take) or requested owner (request)
	PrevAppID string // previous_owner_app_id of pass/take
	Metadata  string // handover metadata, or an echo's message.metadata

	// Entry points: a referral event, the referral inside a postback (a
	// new thread opened from an m.me link or an ad), or an opt-in's ref.
	Ref, Source, AdID string
	// Attachments lists the types of a message's attachments (image,
	// file, sticker, ...), in order.
	Attachments []string
	// Feedback is the answer of a messaging_feedback event.
	Feedback *Feedback
	// Field is a change's field (feed, comments, mentions, leadgen...).
	Field string
	// Entry is the entry's id and time as Meta wrote them, for the
	// envelope to the bot.
	Entry EntryRaw
}

// EntryRaw is an entry's id and time values as JSON text, exactly as the
// webhook had them: a number stays a number, a string a string, escapes
// as they were. Exact is false for events that came without them (stored
// by an older Baton, or made by Baton): the envelope is then written from
// PageID and EntryTime. Time is empty when the entry had none.
type EntryRaw struct {
	Exact    bool
	ID, Time []byte
}

// Feedback is a customer feedback answer: the question's id and type
// (csat, nps, ces), the score as sent, and the free-form follow-up.
type Feedback struct {
	Question, Type, Score, Text string
}

// Errors returned by Parse.
var (
	ErrMalformed     = errors.New("malformed webhook body")
	ErrUnknownObject = errors.New("unknown webhook object")
)

// parsers are reused across webhooks: parsing allocates nothing once a
// parser has grown to the usual body size.
var parsers fastjson.ParserPool

// Parse validates a webhook body and splits it into events, in the order
// they appear. Event.Raw slices are copies of the event objects exactly as
// they appear in the body and stay valid after body changes.
//
// The body is parsed once, with fastjson; only the routing fields are read
// into the Event, and the raw span of each event is found by a scan of the
// same bytes (see spans.go).
func Parse(body []byte) ([]Event, error) { return parse(body, true) }

// ParseShared is Parse without copying the events' bytes: each Event.Raw
// is a slice of body, valid only while body is. For a caller that copies
// what it keeps, as the webhook handler does into its queue records.
func ParseShared(body []byte) ([]Event, error) { return parse(body, false) }

func parse(body []byte, copyRaw bool) ([]Event, error) {
	// The parser is lenient (it takes 00 for a number) and recursive; the
	// validator is strict and bounds the depth and the number of values in
	// one linear pass. (fastjson's own validator recurses without limit and
	// builds its error afresh at every level, quoting the body: quadratic
	// in the depth of a body left unclosed.)
	if err := validate(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// The scan finds the events' spans in a pass cheaper than the
	// parser's, so a body of too many events is refused before the
	// parser builds them. (It takes the first of repeated keys, as the
	// parser does: the events it counts are there.)
	spans := eventSpans(body)
	if n := spans.events(); n > MaxEvents {
		return nil, fmt.Errorf("%w: more than %d events", ErrMalformed, MaxEvents)
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		// Not expected after validate; fastjson's text would quote the body.
		return nil, fmt.Errorf("%w: the parser refused a validated body", ErrMalformed)
	}
	if v.Type() == fastjson.TypeNull {
		return nil, fmt.Errorf("%w: %q", ErrUnknownObject, "")
	}
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: body is a JSON %s, not an object", ErrMalformed, v.Type())
	}
	var object string
	if o := v.Get("object"); o != nil && o.Type() != fastjson.TypeNull {
		b, err := o.StringBytes()
		if err != nil {
			return nil, fmt.Errorf("%w: object is not a string", ErrMalformed)
		}
		object = string(b)
	}
	if object != "page" && object != "instagram" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownObject, clip(object))
	}
	entries, err := arrayOrNull(v.Get("entry"))
	if err != nil {
		return nil, fmt.Errorf("%w: entry is not an array", ErrMalformed)
	}
	// Each of Meta's entries holds an event or more: more entries than
	// events allowed is no delivery of Meta's.
	if len(entries) > MaxEvents {
		return nil, fmt.Errorf("%w: more than %d entries", ErrMalformed, MaxEvents)
	}
	// Sized once: growing the slice by appends would allocate about
	// twice what a delivery of many events needs.
	events := make([]Event, 0, min(spans.events(), MaxEvents))
	count := 0
	for i, e := range entries {
		if e.Type() != fastjson.TypeObject && e.Type() != fastjson.TypeNull {
			return nil, fmt.Errorf("%w: entry[%d] is not an object", ErrMalformed, i)
		}
		id, err := entryID(e.Get("id"))
		if err != nil {
			return nil, fmt.Errorf("%w: entry[%d]: %v", ErrMalformed, i, err)
		}
		if id == "" {
			return nil, fmt.Errorf("%w: entry[%d] has no id", ErrMalformed, i)
		}
		entryTime := intValue(e.Get("time"))
		entryRaw := EntryRaw{}
		if rid, rtime := spans.entry(body, i); rid != nil {
			entryRaw = EntryRaw{Exact: true, ID: rid, Time: rtime}
			if copyRaw {
				entryRaw.ID, entryRaw.Time = bytes.Clone(rid), bytes.Clone(rtime)
			}
		}
		for _, ch := range [channels]Channel{Messaging, Standby, Changes} {
			list, err := arrayOrNull(e.Get(ch.String()))
			if err != nil {
				return nil, fmt.Errorf("%w: entry[%d].%s is not an array", ErrMalformed, i, ch)
			}
			if count += len(list); count > MaxEvents {
				return nil, fmt.Errorf("%w: more than %d events", ErrMalformed, MaxEvents)
			}
			raws := spans.of(body, i, ch, len(list))
			for j, ev := range list {
				var raw []byte
				switch {
				case raws != nil && copyRaw:
					raw = append([]byte(nil), raws[j]...)
				case raws != nil:
					raw = raws[j]
				default:
					raw = ev.MarshalTo(nil) // the same event, re-encoded (odd bodies only)
				}
				event, err := eventFrom(ev, object, id, entryTime, ch, raw)
				if err != nil {
					return nil, fmt.Errorf("%w: entry[%d].%s[%d]: %v", ErrMalformed, i, ch, j, err)
				}
				event.Entry = entryRaw
				events = append(events, event)
			}
		}
	}
	return events, nil
}

// clip shortens what an error quotes from a body, so that the error stays
// short whatever the body holds.
func clip(s string) string {
	const most = 40
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "..."
}

// arrayOrNull returns the elements of an array; absent or null is empty.
func arrayOrNull(v *fastjson.Value) ([]*fastjson.Value, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	return v.Array()
}

// entryID reads entry[].id, a string or a number (kept as its literal).
func entryID(v *fastjson.Value) (string, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return "", nil
	}
	switch v.Type() {
	case fastjson.TypeString, fastjson.TypeNumber:
		// The id is written again in every envelope to the bot, and an
		// encoder replaces bytes that are not UTF-8: the bot would be
		// told of another page. Meta's ids are digits.
		if id := idString(v); utf8.ValidString(id) {
			return id, nil
		}
		return "", errors.New("id is not UTF-8")
	}
	return "", errors.New("id is neither string nor number")
}

// ParseEvent reads the routing fields of one raw event. It is used when an
// event comes back from the durable queue.
func ParseEvent(object, page string, entryTime int64, ch Channel, raw []byte) (Event, error) {
	var p fastjson.Parser
	return parseEvent(&p, object, page, entryTime, ch, raw)
}

func parseEvent(p *fastjson.Parser, object, page string, entryTime int64, ch Channel, raw []byte) (Event, error) {
	v, err := p.ParseBytes(raw)
	if err != nil {
		return Event{}, err
	}
	return eventFrom(v, object, page, entryTime, ch, append([]byte(nil), raw...))
}

// eventFrom reads the routing fields of the parsed event v; raw becomes
// Event.Raw as it is.
func eventFrom(v *fastjson.Value, object, page string, entryTime int64, ch Channel, raw []byte) (Event, error) {
	if v.Type() != fastjson.TypeObject {
		return Event{}, errors.New("event is not an object")
	}
	if ch == Changes {
		// A change belongs to the page (or account), not to a user's
		// thread: its sender, if any, is a commenter, not a PSID.
		return Event{Object: object, PageID: page, EntryTime: entryTime, Channel: ch, Raw: raw,
			Kind: KindChange, Field: str(v.Get("field"))}, nil
	}
	ev := Event{
		Object: object, PageID: page, EntryTime: entryTime, Channel: ch,
		Raw:       raw,
		UserID:    idString(v.Get("sender", "id")),
		Timestamp: intValue(v.Get("timestamp")),
	}
	switch {
	case v.Exists("message"):
		m := v.Get("message")
		ev.MID = str(m.Get("mid"))
		ev.Text = str(m.Get("text"))
		switch {
		case m.GetBool("is_echo"):
			ev.Kind = KindEcho
			ev.AppID = idString(m.Get("app_id"))
			ev.Metadata = str(m.Get("metadata"))
			ev.UserID = idString(v.Get("recipient", "id"))
		case m.Exists("quick_reply"):
			ev.Kind = KindQuickReply
			ev.Payload = str(m.Get("quick_reply", "payload"))
		default:
			ev.Kind = KindText
		}
		for _, a := range m.GetArray("attachments") {
			ev.Attachments = append(ev.Attachments, str(a.Get("type")))
		}
		ev.readReferral(m.Get("referral"))
	case v.Exists("postback"):
		ev.Kind = KindPostback
		ev.MID = str(v.Get("postback", "mid"))
		ev.Text = str(v.Get("postback", "title"))
		ev.Payload = str(v.Get("postback", "payload"))
		ev.readReferral(v.Get("postback", "referral"))
	case v.Exists("pass_thread_control"):
		ev.Kind = KindPassThreadControl
		h := v.Get("pass_thread_control")
		ev.AppID, ev.PrevAppID, ev.Metadata = idString(h.Get("new_owner_app_id")), idString(h.Get("previous_owner_app_id")), str(h.Get("metadata"))
	case v.Exists("take_thread_control"):
		ev.Kind = KindTakeThreadControl
		h := v.Get("take_thread_control")
		ev.AppID, ev.PrevAppID, ev.Metadata = idString(h.Get("new_owner_app_id")), idString(h.Get("previous_owner_app_id")), str(h.Get("metadata"))
	case v.Exists("request_thread_control"):
		ev.Kind = KindRequestThreadControl
		h := v.Get("request_thread_control")
		ev.AppID, ev.Metadata = idString(h.Get("requested_owner_app_id")), str(h.Get("metadata"))
	case v.Exists("referral"):
		ev.Kind = KindReferral
		ev.readReferral(v.Get("referral"))
	case v.Exists("optin"):
		ev.Kind = KindOptin
		ev.UserRef = str(v.Get("optin", "user_ref"))
		ev.Ref = str(v.Get("optin", "ref"))
	case v.Exists("delivery"):
		ev.Kind = KindDelivery
	case v.Exists("read"):
		ev.Kind = KindRead
	case v.Exists("reaction"):
		ev.Kind = KindReaction
	case v.Exists("message_edit"):
		ev.Kind = KindEdit
		ev.MID = str(v.Get("message_edit", "mid"))
	case v.Exists("messaging_feedback"):
		ev.Kind = KindFeedback
		// One screen with one question is all the template allows today;
		// read the first answer.
		for _, screen := range v.GetArray("messaging_feedback", "feedback_screens") {
			q := screen.GetObject("questions")
			if q == nil {
				continue
			}
			q.Visit(func(id []byte, a *fastjson.Value) {
				if ev.Feedback == nil {
					ev.Feedback = &Feedback{Question: string(id), Type: str(a.Get("type")), Score: str(a.Get("payload")),
						Text: str(a.Get("follow_up", "payload"))}
				}
			})
		}
	case v.Exists("app_roles"):
		ev.Kind = KindAppRoles
	case v.Exists("policy_enforcement"):
		ev.Kind = KindPolicyEnforcement
	case v.Exists("account_linking"):
		ev.Kind = KindAccountLinking
	case v.Exists("baton_timer"):
		ev.Kind = KindTimer
		ev.Text = str(v.Get("baton_timer", "kind"))
		ev.Metadata = string(v.Get("baton_timer", "data").MarshalTo(nil))
	}
	return ev, nil
}

func (e *Event) readReferral(r *fastjson.Value) {
	if r == nil || r.Type() != fastjson.TypeObject {
		return
	}
	e.Ref, e.Source, e.AdID = str(r.Get("ref")), str(r.Get("source")), idString(r.Get("ad_id"))
}

// TimerEvent builds the queue event of a durable timer that came due, in
// the shape of a messaging event so it travels the same path.
func TimerEvent(page, user, kind string, due time.Time, data []byte) Event {
	if !json.Valid(data) {
		data = []byte("null")
	}
	raw := fmt.Appendf(nil, `{"sender":{"id":%s},"recipient":{"id":%s},"timestamp":%d,"baton_timer":{"kind":%s,"data":%s}}`,
		appendJSONString(nil, user), appendJSONString(nil, page), due.UnixMilli(), appendJSONString(nil, kind), data)
	ev, _ := ParseEvent("page", page, due.UnixMilli(), Messaging, raw) // built above, always valid
	return ev
}

// BatonPostback builds a postback that Baton gives the bot on a rule's
// behalf (postback_to_bot), in the shape of the user's own postbacks. Its
// mid starts with "baton-" so a bot can tell it apart if it cares to.
func BatonPostback(object, page, user, title, payload, mid string, at time.Time) Event {
	raw := fmt.Appendf(nil, `{"sender":{"id":%s},"recipient":{"id":%s},"timestamp":%d,"postback":{"mid":%s,"title":%s,"payload":%s}}`,
		appendJSONString(nil, user), appendJSONString(nil, page), at.UnixMilli(),
		appendJSONString(nil, "baton-"+mid), appendJSONString(nil, title), appendJSONString(nil, payload))
	ev, _ := ParseEvent(object, page, at.UnixMilli(), Messaging, raw) // built above, always valid
	return ev
}

// ThreadUser is the user part of the event's thread key: the PSID, or
// "ref:<user_ref>" for checkbox opt-ins, or "" for page-level events.
func (e *Event) ThreadUser() string {
	if e.UserID != "" {
		return e.UserID
	}
	if e.UserRef != "" {
		return "ref:" + e.UserRef
	}
	return ""
}

// DedupKey identifies a delivery so that Meta's re-deliveries are recognised:
// the mid when the event has one, otherwise a hash of the event bytes. Kinds
// are part of the key because an edit or postback may share a mid with the
// message it refers to.
func (e *Event) DedupKey() []byte {
	h := sha256.New()
	h.Write([]byte(e.Object))
	h.Write([]byte{0})
	h.Write([]byte(e.PageID))
	h.Write([]byte{0, byte(e.Kind), byte(e.Channel), 0})
	if e.MID != "" && e.Kind != KindEdit {
		h.Write([]byte(e.MID))
	} else {
		h.Write(e.Raw)
	}
	return h.Sum(nil)[:16]
}

func str(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	if b, err := v.StringBytes(); err == nil {
		return string(b)
	}
	return ""
}

// idString accepts ids written as JSON strings or numbers; numbers are kept
// as their literal text so large ids never pass through float64.
func idString(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b)
	case fastjson.TypeNumber:
		return v.String()
	}
	return ""
}

func intValue(v *fastjson.Value) int64 {
	if v == nil {
		return 0
	}
	switch v.Type() {
	case fastjson.TypeNumber:
		n, err := v.Int64()
		if err != nil {
			f, _ := v.Float64()
			return int64(f)
		}
		return n
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		n, _ := strconv.ParseInt(string(b), 10, 64)
		return n
	}
	return 0
}

// batonMetadataPrefix marks the messages Baton itself sends (rule texts,
// timeout warnings, surveys) in message.metadata, which Meta echoes back.
const batonMetadataPrefix = "baton:"

// BatonMetadata is the message.metadata of a message Baton sends for rule.
func BatonMetadata(rule string) string {
	m := batonMetadataPrefix + rule
	if len(m) > 900 {
		m = strings.ToValidUTF8(m[:900], "") // inside the Send API's limit; only the prefix matters
	}
	return m
}

// IsBatonMetadata reports whether an echo's metadata says Baton sent it.
func IsBatonMetadata(metadata string) bool {
	return strings.HasPrefix(metadata, batonMetadataPrefix)
}
