package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/messenger"
)

// now is the time events are judged at; a variable so tests can fix it.
var now = time.Now

// ExplainOptions say how to read and judge the event Explain is given.
type ExplainOptions struct {
	// Owner is who owns the thread of one event object: "bot" (the
	// default), "other", or an app name from Apps or an app id, which put
	// the event on standby as Meta would.
	Owner string
	AppID string            // the bot's app id, to tell its echoes from other apps'
	Apps  map[string]string // the config's apps: (name -> app id)
	// Page is the page of one event object; by default its recipient.id
	// (the sender's for an echo, which the page sends).
	Page string
	// At is when the event is judged (business hours, teams); zero: now.
	At time.Time
}

// Explain shows which rule of set matches an event, on what trigger, and
// what it would do. eventJSON is either a whole webhook body (every event
// in it is explained, each with the owner its channel implies) or one
// event object from messaging[]/standby[]. It returns 0 when every event
// was explained, 1 for an unreadable event and 2 for an unknown owner.
func Explain(out, errOut io.Writer, set *policies.Set, eventJSON []byte, o ExplainOptions) int {
	events, code := explainEvents(errOut, set, eventJSON, o)
	if code != ExitOK {
		return code
	}
	at := o.At
	if at.IsZero() {
		at = now()
	}
	for i := range events {
		if i > 0 {
			fmt.Fprintln(out)
		}
		explainOne(out, set, &events[i], at, o.AppID, o.Apps)
	}
	return ExitOK
}

// explained is an event with who owns its thread.
type explained struct {
	ev       messenger.Event
	owner    string // "" or a note for the owner line
	ownerApp string // the other app's id when --owner named it
}

func explainEvents(errOut io.Writer, set *policies.Set, data []byte, o ExplainOptions) ([]explained, int) {
	owner, appID, apps := o.Owner, o.AppID, o.Apps
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		fmt.Fprintf(errOut, "event: want a webhook body or one event object: %v\n", err)
		return nil, ExitFail
	}
	_, hasObject := top["object"]
	_, hasEntry := top["entry"]
	if hasObject || hasEntry {
		// A whole delivery: where each event sits says who owns its thread.
		if owner != "" {
			fmt.Fprintln(errOut, "note: --owner is ignored for a whole webhook body: an event on standby[] means another app owns the thread")
		}
		if o.Page != "" {
			fmt.Fprintln(errOut, "note: --page is ignored for a whole webhook body: each entry's id is its page")
		}
		evs, err := messenger.Parse(data)
		if err != nil {
			fmt.Fprintf(errOut, "event: %v\n", err)
			return nil, ExitFail
		}
		if len(evs) == 0 {
			fmt.Fprintln(errOut, "event: the webhook body holds no events")
			return nil, ExitFail
		}
		out := make([]explained, len(evs))
		for i, ev := range evs {
			out[i] = explained{ev: ev, owner: "the event came on " + ev.Channel.String()}
		}
		return out, ExitOK
	}

	ch, ownerApp, note, ok := ownerChannel(owner, appID, apps)
	if !ok {
		names := "bot, other"
		for _, name := range sortedNames(apps) {
			names += ", " + name
		}
		fmt.Fprintf(errOut, "unknown owner %q: want one of %s, or an app id\n", owner, names)
		return nil, ExitUsage
	}
	raw := bytes.TrimSpace(data)
	page := o.Page
	if page == "" {
		page = eventPage(raw)
	}
	if page == "" {
		page = "0"
		if pages := set.Pages(); len(pages) > 0 {
			fmt.Fprintf(errOut, "warning: the event names no page (no recipient.id) and --page is not given: "+
				"it is judged by the files without pages:, not by those of pages %s\n", strings.Join(pages, ", "))
		}
	}
	ev, err := messenger.ParseEvent("page", page, 0, ch, raw)
	if err != nil {
		fmt.Fprintf(errOut, "event: %v\n", err)
		return nil, ExitFail
	}
	return []explained{{ev: ev, owner: note, ownerApp: ownerApp}}, ExitOK
}

// eventPage is the page of one event object: its recipient, or for an
// echo (which the page sends) its sender; "" when it names none.
func eventPage(raw []byte) string {
	var ev struct {
		Sender    struct{ ID json.RawMessage } `json:"sender"`
		Recipient struct{ ID json.RawMessage } `json:"recipient"`
		Message   struct {
			IsEcho bool `json:"is_echo"`
		} `json:"message"`
	}
	if json.Unmarshal(raw, &ev) != nil {
		return ""
	}
	id := ev.Recipient.ID
	if ev.Message.IsEcho {
		id = ev.Sender.ID
	}
	var s string
	if json.Unmarshal(id, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(id, &n) == nil {
		return n.String()
	}
	return ""
}

// ownerChannel turns --owner into the channel Meta would deliver the event
// on, and the owning app's id when it names one: the proxy knows the owner
// from the channel and what it observed, not from a flag.
func ownerChannel(owner, appID string, apps map[string]string) (ch messenger.Channel, ownerApp, note string, ok bool) {
	switch {
	case owner == "" || owner == "bot" || (appID != "" && owner == appID):
		return messenger.Messaging, "", "", true
	case owner == "other":
		return messenger.Standby, "", "", true
	case apps[owner] != "":
		return messenger.Standby, apps[owner], owner + ", app " + apps[owner], true
	case strings.Trim(owner, "0123456789") == "":
		return messenger.Standby, owner, "app " + owner, true
	}
	return 0, "", "", false
}

func sortedNames(apps map[string]string) []string {
	return slices.Sorted(maps.Keys(apps))
}

func explainOne(out io.Writer, set *policies.Set, x *explained, at time.Time, appID string, apps map[string]string) {
	ev := &x.ev
	user := "no user"
	if u := ev.ThreadUser(); u != "" {
		user = "user " + u
	}
	fmt.Fprintf(out, "event: page %s, %s: %s\n", ev.PageID, user, describe(ev, func(id string) string { return appLabel(id, appID, apps) }, 0))

	in, judged := dispatch.PolicyInput(ev, observedThread(ev.Channel, x.ownerApp), at, appID)
	if x.owner != "" {
		fmt.Fprintf(out, "owner: %s (%s)\n", in.Owner, x.owner)
	} else {
		fmt.Fprintf(out, "owner: %s\n", in.Owner)
	}
	if ev.Kind == messenger.KindPostback && ev.Channel == messenger.Standby && ev.Payload != "" {
		fmt.Fprintln(out, "note: Meta strips postback payloads from standby events; live, the rules would see none")
	}
	toBot := "the event goes to the bot"
	if ev.Channel == messenger.Standby {
		toBot = "a standby event goes to the bot only with bot.forward_standby"
	}
	if !judged {
		what := ev.Kind.String() + " events"
		switch ev.Kind {
		case messenger.KindText, messenger.KindQuickReply, messenger.KindPostback:
			// The kinds rules do look at: what is missing is the user.
			what = "events without a user id"
		}
		fmt.Fprintf(out, "not judged: rules do not look at %s; %s\n", what, toBot)
		return
	}

	dec := set.Evaluate(in)
	if !dec.Matched {
		fmt.Fprintf(out, "no rule matched: %s\n", toBot)
		return
	}
	for _, m := range dec.Rules {
		fmt.Fprintf(out, "rule %q (%s:%d) matched on %s\n", m.Rule, m.File, m.Line, m.Trigger)
	}
	if dec.Observe {
		fmt.Fprintln(out, "observe mode: the decision is logged and counted, nothing below is done, and the event goes to the bot")
	}
	for _, a := range dec.Actions {
		fmt.Fprintf(out, "  %s\n", a)
	}
	switch {
	case !dec.Forward:
		fmt.Fprintln(out, "forward to bot: no (unless an action fails: then the bot gets the event, so the user is not left unanswered)")
	case ev.Channel == messenger.Standby:
		fmt.Fprintln(out, "forward to bot: yes (a standby event only with bot.forward_standby)")
	default:
		fmt.Fprintln(out, "forward to bot: yes")
	}
}
