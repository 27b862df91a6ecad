package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// actionYAML is one do item; exactly one field may be written.
type actionYAML struct {
	SendText         *string           `yaml:"send_text"`
	SendQuickReplies *quickRepliesYAML `yaml:"send_quick_replies"`
	SendButtons      *buttonsYAML      `yaml:"send_buttons"`
	SendFeedback     *feedbackYAML     `yaml:"send_feedback"`
	Pass             *passYAML         `yaml:"pass"`
	Take             *reasonYAML       `yaml:"take"`
	Release          *reasonYAML       `yaml:"release"`
	Request          *reasonYAML       `yaml:"request"`
	Extend           *extendYAML       `yaml:"extend"`
	Tag              *string           `yaml:"tag"`
	Untag            *string           `yaml:"untag"`
	Notify           *notifyYAML       `yaml:"notify"`
	// PostbackToBot gives the bot a postback it did not get from the
	// user, so it can resume at a chosen step (after a handback, say).
	PostbackToBot *postbackYAML `yaml:"postback_to_bot"`
	// Refuse declines a request_thread_control: nothing is called, the
	// decision is recorded in the thread's history.
	Refuse *reasonYAML `yaml:"refuse"`
}

type passYAML struct {
	To     string `yaml:"to"`
	Reason string `yaml:"reason"`
	// After delays the pass (honouring a request after a while, say): the
	// thread is passed then if the bot still owns it.
	After string `yaml:"after"`
	// IncludeLast is how many of the user's last messages go into the
	// handover metadata, for the receiving agent's context.
	IncludeLast int `yaml:"include_last"`
}

type reasonYAML struct {
	Reason string `yaml:"reason"`
}

type quickRepliesYAML struct {
	Text    string      `yaml:"text"`
	Replies []replyYAML `yaml:"replies"`
}

type replyYAML struct {
	Title   string `yaml:"title"`
	Payload string `yaml:"payload"`
}

type buttonsYAML struct {
	Text    string       `yaml:"text"`
	Buttons []buttonYAML `yaml:"buttons"`
}

// buttonYAML is a postback button (payload) or a URL button (url).
type buttonYAML struct {
	Title   string `yaml:"title"`
	Payload string `yaml:"payload"`
	URL     string `yaml:"url"`
}

// feedbackYAML is a customer feedback template with its one question.
type feedbackYAML struct {
	Title         string       `yaml:"title"`
	Subtitle      string       `yaml:"subtitle"`
	ButtonTitle   string       `yaml:"button_title"`
	Question      questionYAML `yaml:"question"`
	PrivacyURL    string       `yaml:"privacy_url"`
	ExpiresInDays *int         `yaml:"expires_in_days"`
}

type questionYAML struct {
	ID          string        `yaml:"id"`
	Type        string        `yaml:"type"`
	Title       string        `yaml:"title"`
	ScoreLabel  string        `yaml:"score_label"`
	ScoreOption string        `yaml:"score_option"`
	FollowUp    *followUpYAML `yaml:"follow_up"`
}

type followUpYAML struct {
	Placeholder string `yaml:"placeholder"`
}

type extendYAML struct {
	Duration string `yaml:"duration"` // Go syntax, plus d for days: 48h, 2d, 1d12h
}

type notifyYAML struct {
	URL    string `yaml:"url"`
	Reason string `yaml:"reason"`
}

// Platform limits, from the Send API and customer feedback template
// references (see the protocol notes, §8 and §10). Lengths are in
// characters.
const (
	maxQuickReplies   = 13
	maxReplyTitle     = 20
	maxPayload        = 1000
	maxButtonText     = 640
	maxButtons        = 3
	maxButtonTitle    = 20
	maxFeedbackTitle  = 65
	maxFeedbackSub    = 80
	maxFeedbackButton = 20
	maxQuestionID     = 80
	minQuestionTitle  = 5
	maxQuestionTitle  = 85
	maxPlaceholder    = 65
	maxExpiresInDays  = 7
	maxIncludeLast    = 10
	minExtend         = time.Second
	maxExtend         = 7 * 24 * time.Hour
)

// feedbackTypes lists, for each question type, its score options and
// score labels; the first of each is the platform's default.
var feedbackTypes = map[string]struct{ options, labels []string }{
	"csat": {[]string{"five_stars", "one_to_five", "five_emojis"}, []string{"neg_pos", "dis_sat", "poor_great", "none"}},
	"nps":  {[]string{"zero_to_ten"}, []string{"unlike_like", "none"}},
	"ces":  {[]string{"one_to_seven"}, []string{"hard_easy", "none"}},
}

var (
	questionIDRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	// urlRE is an absolute http(s) URL with a host; net/url stays out of
	// this package (see TestPurity), and this is all a policy file needs.
	urlRE = regexp.MustCompile(`^(https?)://([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:[/?#]\S*)?$`)
	// looksLikeURL finds what the feedback template refuses in its texts:
	// a scheme, "www." or a domain with a common top-level domain.
	looksLikeURL = regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*://|\bwww\.|\b[a-z0-9-]+\.(?:com|net|org|io|co|me|ly|app|dev|info|biz|shop|link)\b`)
)

func (c *compiler) compileActions(path []any) []Action {
	count := yamlfile.Len(c.root, path...)
	if count == 0 {
		c.problem(path, "needs at least one action (%s)", actionKeys)
		return nil
	}
	actions := make([]Action, 0, count)
	for i := range count {
		ip := at(path, i)
		n := yamlfile.Lookup(c.root, ip...)
		if n == nil || n.Kind != yaml.MappingNode && !yamlfile.Present(c.root, ip...) {
			c.problem(ip, "empty action: use one of %s", actionKeys)
			continue
		}
		if n.Kind != yaml.MappingNode {
			continue // a wrong shape, which yamlfile has reported
		}
		// Count the keys written, not the fields decoded: "- take:" with no
		// value decodes to a nil pointer but is a valid action.
		var keys []string
		for k := 0; k+1 < len(n.Content); k += 2 {
			keys = append(keys, n.Content[k].Value)
		}
		switch len(keys) {
		case 0:
			c.problem(ip, "empty action: use one of %s", actionKeys)
			continue
		case 1:
		default:
			c.problem(ip, "has %d action keys (%s): each do item holds exactly one action; split them into separate \"- \" items",
				len(keys), strings.Join(keys, ", "))
			continue
		}
		var a actionYAML
		_ = n.Decode(&a) // errors reported by yamlfile.Decode
		kp := at(ip, keys[0])
		var act Action
		ok := true
		switch keys[0] {
		case "send_text":
			act, ok = c.sendText(a.SendText, kp)
		case "send_quick_replies":
			act, ok = c.sendQuickReplies(a.SendQuickReplies, kp)
		case "send_buttons":
			act, ok = c.sendButtons(a.SendButtons, kp)
		case "send_feedback":
			act, ok = c.sendFeedback(a.SendFeedback, kp)
		case "pass":
			act, ok = c.pass(a.Pass, kp)
		case "take":
			act = Action{Kind: ActionTake, Reason: reason(a.Take)}
		case "release":
			act = Action{Kind: ActionRelease, Reason: reason(a.Release)}
		case "request":
			act = Action{Kind: ActionRequest, Reason: reason(a.Request)}
		case "extend":
			act, ok = c.extend(a.Extend, kp)
		case "tag":
			act, ok = c.tag(ActionTag, a.Tag, kp)
		case "untag":
			act, ok = c.tag(ActionUntag, a.Untag, kp)
		case "notify":
			act, ok = c.notify(a.Notify, kp)
		case "postback_to_bot":
			act, ok = c.postbackToBot(a.PostbackToBot, kp)
		case "refuse":
			act = Action{Kind: ActionRefuse, Reason: reason(a.Refuse)}
		default:
			ok = false // an unknown key, which yamlfile has reported
		}
		if ok {
			actions = append(actions, act)
		}
	}
	return actions
}

func reason(r *reasonYAML) string {
	if r == nil {
		return ""
	}
	return r.Reason
}

// chars counts characters the way the platform's limits do.
func chars(s string) int { return utf8.RuneCountInString(s) }

// checkText reports a problem with a message text and says whether it is
// fine: non-empty and under the limit.
func (c *compiler) checkText(text string, path []any, limit int, what string) bool {
	switch n := chars(text); {
	case text == "":
		c.problem(path, "%s must not be empty", what)
		return false
	case limit == maxTextLen && n >= limit:
		c.problem(path, "%s is %d characters; Messenger needs fewer than %d", what, n, limit)
		return false
	case limit != maxTextLen && n > limit:
		c.problem(path, "%s is %d characters; Messenger allows at most %d", what, n, limit)
		return false
	}
	return true
}

func (c *compiler) sendText(text *string, path []any) (Action, bool) {
	if text == nil {
		c.problem(path, "message text must not be empty")
		return Action{}, false
	}
	if !c.checkText(*text, path, maxTextLen, "message text") {
		return Action{}, false
	}
	return Action{Kind: ActionSendText, Text: *text, Message: encodeJSON(textMessage{Text: *text})}, true
}

// The Send API message objects, in the field order of Meta's examples.
type textMessage struct {
	Text         string       `json:"text"`
	QuickReplies []quickReply `json:"quick_replies,omitempty"`
}

type quickReply struct {
	ContentType string `json:"content_type"`
	Title       string `json:"title"`
	Payload     string `json:"payload"`
}

type attachmentMessage struct {
	Attachment attachment `json:"attachment"`
}

type attachment struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

type buttonTemplate struct {
	TemplateType string   `json:"template_type"`
	Text         string   `json:"text"`
	Buttons      []button `json:"buttons"`
}

type button struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Payload string `json:"payload,omitempty"`
	URL     string `json:"url,omitempty"`
}

type feedbackTemplate struct {
	TemplateType    string           `json:"template_type"`
	Title           string           `json:"title"`
	Subtitle        string           `json:"subtitle"`
	ButtonTitle     string           `json:"button_title"`
	FeedbackScreens []feedbackScreen `json:"feedback_screens"`
	BusinessPrivacy privacy          `json:"business_privacy"`
	ExpiresInDays   int              `json:"expires_in_days"`
}

type feedbackScreen struct {
	Questions []question `json:"questions"`
}

type question struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Title       string    `json:"title,omitempty"`
	ScoreLabel  string    `json:"score_label,omitempty"`
	ScoreOption string    `json:"score_option,omitempty"`
	FollowUp    *followUp `json:"follow_up,omitempty"`
}

type followUp struct {
	Type        string `json:"type"`
	Placeholder string `json:"placeholder,omitempty"`
}

type privacy struct {
	URL string `json:"url"`
}

// encodeJSON encodes a message object; texts are not HTML, so <, > and &
// stay as they are.
func encodeJSON(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // plain structs of strings always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func (c *compiler) sendQuickReplies(q *quickRepliesYAML, path []any) (Action, bool) {
	if q == nil {
		c.problem(path, "needs text and replies")
		return Action{}, false
	}
	ok := c.checkText(q.Text, at(path, "text"), maxTextLen, "message text")
	rp := at(path, "replies")
	n := yamlfile.Len(c.root, rp...)
	switch {
	case n == 0:
		if !c.rep.Reported(rp...) {
			c.problem(rp, "required: 1 to %d replies, each {title, payload}", maxQuickReplies)
		}
		ok = false
	case n > maxQuickReplies:
		c.problem(rp, "has %d replies; Messenger allows at most %d", n, maxQuickReplies)
		ok = false
	}
	msg := textMessage{Text: q.Text}
	for i := range n {
		ip := at(rp, i)
		var ry replyYAML
		if node := yamlfile.Lookup(c.root, ip...); node == nil || node.Decode(&ry) != nil {
			ok = false
			continue
		}
		ok = c.checkText(ry.Title, at(ip, "title"), maxReplyTitle, "reply title") && ok
		ok = c.checkText(ry.Payload, at(ip, "payload"), maxPayload, "reply payload") && ok
		msg.QuickReplies = append(msg.QuickReplies, quickReply{ContentType: "text", Title: ry.Title, Payload: ry.Payload})
	}
	if !ok {
		return Action{}, false
	}
	return Action{Kind: ActionSendQuickReplies, Text: q.Text, Message: encodeJSON(msg)}, true
}

func (c *compiler) sendButtons(b *buttonsYAML, path []any) (Action, bool) {
	if b == nil {
		c.problem(path, "needs text and buttons")
		return Action{}, false
	}
	ok := c.checkText(b.Text, at(path, "text"), maxButtonText, "button template text")
	bp := at(path, "buttons")
	n := yamlfile.Len(c.root, bp...)
	switch {
	case n == 0:
		if !c.rep.Reported(bp...) {
			c.problem(bp, "required: 1 to %d buttons, each {title, payload} or {title, url}", maxButtons)
		}
		ok = false
	case n > maxButtons:
		c.problem(bp, "has %d buttons; Messenger allows at most %d", n, maxButtons)
		ok = false
	}
	tmpl := buttonTemplate{TemplateType: "button", Text: b.Text}
	for i := range n {
		ip := at(bp, i)
		var by buttonYAML
		if node := yamlfile.Lookup(c.root, ip...); node == nil || node.Decode(&by) != nil {
			ok = false
			continue
		}
		ok = c.checkText(by.Title, at(ip, "title"), maxButtonTitle, "button title") && ok
		switch {
		case by.Payload != "" && by.URL != "":
			c.problem(ip, "a button has either a payload (postback button) or a url (web button), not both")
			ok = false
		case by.URL != "":
			ok = c.checkURL(by.URL, at(ip, "url"), false) && ok
			tmpl.Buttons = append(tmpl.Buttons, button{Type: "web_url", Title: by.Title, URL: by.URL})
		case by.Payload != "":
			ok = c.checkText(by.Payload, at(ip, "payload"), maxPayload, "button payload") && ok
			tmpl.Buttons = append(tmpl.Buttons, button{Type: "postback", Title: by.Title, Payload: by.Payload})
		default:
			c.problem(ip, "a button needs a payload (postback button) or a url (web button)")
			ok = false
		}
	}
	if !ok {
		return Action{}, false
	}
	msg := attachmentMessage{Attachment: attachment{Type: "template", Payload: tmpl}}
	return Action{Kind: ActionSendButtons, Text: b.Text, Message: encodeJSON(msg)}, true
}

// checkURL checks an absolute http(s) URL; httpsOnly for links the
// platform requires to be secure.
func (c *compiler) checkURL(u string, path []any, httpsOnly bool) bool {
	m := urlRE.FindStringSubmatch(u)
	switch {
	case u == "":
		c.problem(path, "required: an absolute URL such as https://example.com/path")
		return false
	case m == nil:
		c.problem(path, "%q is not an absolute http(s) URL such as https://example.com/path", u)
		return false
	case httpsOnly && m[1] != "https":
		c.problem(path, "%q must use https", u)
		return false
	}
	return true
}

func (c *compiler) sendFeedback(f *feedbackYAML, path []any) (Action, bool) {
	if f == nil {
		c.problem(path, "needs title, subtitle, button_title, question and privacy_url")
		return Action{}, false
	}
	ok := true
	for _, t := range []struct {
		key, val string
		limit    int
	}{
		{"title", f.Title, maxFeedbackTitle},
		{"subtitle", f.Subtitle, maxFeedbackSub},
		{"button_title", f.ButtonTitle, maxFeedbackButton},
	} {
		p := at(path, t.key)
		if !c.checkText(t.val, p, t.limit, t.key) {
			ok = false
			continue
		}
		if looksLikeURL.MatchString(t.val) {
			c.problem(p, "%s %q looks like it contains a URL, which the feedback template does not allow", t.key, t.val)
			ok = false
		}
	}

	qp := at(path, "question")
	q := f.Question
	switch {
	case q.ID == "":
		c.problem(at(qp, "id"), "required: the question id, which comes back in the messaging_feedback webhook")
		ok = false
	case len(q.ID) > maxQuestionID || !questionIDRE.MatchString(q.ID):
		c.problem(at(qp, "id"), "question id %q must be letters, digits and '_' (no '-'), at most %d characters", q.ID, maxQuestionID)
		ok = false
	}
	spec, known := feedbackTypes[q.Type]
	if !known {
		if q.Type == "" {
			c.problem(at(qp, "type"), "required: csat, nps or ces")
		} else {
			c.problem(at(qp, "type"), "unknown question type %q (expected csat, nps or ces)", q.Type)
		}
		ok = false
	}
	if q.Title != "" {
		if n := chars(q.Title); n < minQuestionTitle || n > maxQuestionTitle {
			c.problem(at(qp, "title"), "question title is %d characters; Messenger needs %d to %d (leave it out for the localized default)", n, minQuestionTitle, maxQuestionTitle)
			ok = false
		}
	}
	if known && q.ScoreLabel != "" && !slices.Contains(spec.labels, q.ScoreLabel) {
		c.problem(at(qp, "score_label"), "score_label %q does not go with %s (expected %s)", q.ScoreLabel, q.Type, strings.Join(spec.labels, ", "))
		ok = false
	}
	if known && q.ScoreOption != "" && !slices.Contains(spec.options, q.ScoreOption) {
		c.problem(at(qp, "score_option"), "score_option %q does not go with %s (expected %s)", q.ScoreOption, q.Type, strings.Join(spec.options, ", "))
		ok = false
	}
	var fu *followUp
	if c.written(qp, "follow_up") {
		fu = &followUp{Type: "free_form"}
		if q.FollowUp != nil {
			fu.Placeholder = q.FollowUp.Placeholder
			if n := chars(fu.Placeholder); n > maxPlaceholder {
				c.problem(at(qp, "follow_up", "placeholder"), "placeholder is %d characters; Messenger allows at most %d", n, maxPlaceholder)
				ok = false
			}
		}
	}
	ok = c.checkURL(f.PrivacyURL, at(path, "privacy_url"), true) && ok

	days := 1
	if f.ExpiresInDays != nil {
		days = *f.ExpiresInDays
		if days < 1 || days > maxExpiresInDays {
			c.problem(at(path, "expires_in_days"), "expires_in_days is %d; Messenger allows 1 to %d", days, maxExpiresInDays)
			ok = false
		}
	}
	if !ok {
		return Action{}, false
	}
	tmpl := feedbackTemplate{
		TemplateType: "customer_feedback",
		Title:        f.Title,
		Subtitle:     f.Subtitle,
		ButtonTitle:  f.ButtonTitle,
		FeedbackScreens: []feedbackScreen{{Questions: []question{{
			ID: q.ID, Type: q.Type, Title: q.Title, ScoreLabel: q.ScoreLabel, ScoreOption: q.ScoreOption, FollowUp: fu,
		}}}},
		BusinessPrivacy: privacy{URL: f.PrivacyURL},
		ExpiresInDays:   days,
	}
	msg := attachmentMessage{Attachment: attachment{Type: "template", Payload: tmpl}}
	return Action{Kind: ActionSendFeedback, Text: f.Title, Message: encodeJSON(msg)}, true
}

func (c *compiler) pass(p *passYAML, path []any) (Action, bool) {
	if p == nil || p.To == "" {
		c.problem(at(path, "to"), "required: the app to pass the thread to (%s)", c.knownApps())
		return Action{}, false
	}
	if p.IncludeLast < 0 || p.IncludeLast > maxIncludeLast {
		c.problem(at(path, "include_last"), "include_last is %d; it must be 0 to %d (the metadata stays under 1000 characters)", p.IncludeLast, maxIncludeLast)
		return Action{}, false
	}
	var after time.Duration
	if p.After != "" {
		d, err := parseDuration(p.After)
		if err != nil || d <= 0 || d > maxExtend {
			c.problem(at(path, "after"), "after %q must be a duration such as 5m or 1h, up to 7d", p.After)
			return Action{}, false
		}
		after = d
	}
	switch p.To {
	case DefaultApp, Requester:
		return Action{Kind: ActionPass, App: p.To, Reason: p.Reason, IncludeLast: p.IncludeLast, Duration: after}, true
	}
	id, ok := c.apps[p.To]
	if !ok {
		c.problem(at(path, "to"), "unknown app %q (%s)", p.To, c.knownApps())
		return Action{}, false
	}
	return Action{Kind: ActionPass, App: p.To, AppID: id, Reason: p.Reason, IncludeLast: p.IncludeLast, Duration: after}, true
}

func (c *compiler) extend(e *extendYAML, path []any) (Action, bool) {
	dp := at(path, "duration")
	if e == nil || e.Duration == "" {
		c.problem(dp, "required: how long to extend thread control by, such as 48h or 2d (1s to 7d)")
		return Action{}, false
	}
	d, err := parseDuration(e.Duration)
	switch {
	case err != nil:
		c.problem(dp, "%q is not a duration such as 48h, 90m or 2d", e.Duration)
		return Action{}, false
	case d < minExtend || d > maxExtend:
		c.problem(dp, "duration %s is out of range: thread control can be extended by 1s to 7d", e.Duration)
		return Action{}, false
	}
	return Action{Kind: ActionExtend, Duration: d}, true
}

// parseDuration is time.ParseDuration plus a leading whole number of days
// ("2d", "1d12h"), which is how ops think about thread expiry.
func parseDuration(s string) (time.Duration, error) {
	days, rest, found := strings.Cut(s, "d")
	if !found {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || !digits(days) || n > 10000 {
		return 0, fmt.Errorf("bad day count in %q", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d + r, nil
}

func (c *compiler) tag(kind ActionKind, tag *string, path []any) (Action, bool) {
	if tag == nil {
		c.problem(path, "required: the tag name, such as vip")
		return Action{}, false
	}
	if msg := checkTag(*tag); msg != "" {
		c.problem(path, "%s", msg)
		return Action{}, false
	}
	return Action{Kind: kind, Tag: *tag}, true
}

func (c *compiler) notify(n *notifyYAML, path []any) (Action, bool) {
	if n == nil {
		c.problem(at(path, "url"), "required: the URL to POST the notification to")
		return Action{}, false
	}
	if !c.checkURL(n.URL, at(path, "url"), false) {
		return Action{}, false
	}
	return Action{Kind: ActionNotify, URL: n.URL, Reason: n.Reason}, true
}

type postbackYAML struct {
	Payload string `yaml:"payload"`
	Title   string `yaml:"title"`
}

func (c *compiler) postbackToBot(p *postbackYAML, path []any) (Action, bool) {
	if p == nil || p.Payload == "" {
		c.problem(at(path, "payload"), "required: the payload the bot should receive")
		return Action{}, false
	}
	if chars(p.Payload) > 1000 {
		c.problem(at(path, "payload"), "payload is %d characters; postback payloads are at most 1000", chars(p.Payload))
		return Action{}, false
	}
	return Action{Kind: ActionPostbackToBot, Payload: p.Payload, Text: p.Title}, true
}
