package doctor

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/config"
)

// checkPolicies reads which webhook fields the policies need; the page
// checks use the result.
func (d *doctor) checkPolicies() []result {
	d.needs, d.needsErr = readNeeds(d.cfg.Policies)
	if d.needsErr != nil {
		return []result{{
			status: Fail,
			name:   "policies",
			detail: d.needsErr.Error(),
			fix:    fmt.Sprintf("run `baton check --config %s` and fix what it reports; the webhook fields below are Baton's own, without the policies'", d.configName()),
		}}
	}
	return []result{{
		status: OK,
		name:   "policies",
		detail: fmt.Sprintf("%s; webhook fields needed: %s", plural(len(d.cfg.Policies), "file"), strings.Join(d.needs.fields(), ", ")),
	}}
}

// checkPage runs the checks of page i in order. Each needs the token, so
// a refused token ends them.
func (d *doctor) checkPage(ctx context.Context, i int, p config.Page) []result {
	token := p.Token.Reveal()
	tok := d.checkToken(ctx, i, p.ID, token)
	out := []result{tok}
	if tok.status != OK {
		return out
	}
	out = append(out, d.checkFeatures(ctx, p.ID, token))
	def, others := d.checkDefaultApp(ctx, p.ID, token)
	out = append(out, def, d.checkTake(ctx, p.ID, token), d.checkWebhookFields(ctx, p.ID, token), d.checkApps(p.ID, others))
	return out
}

func pageName(check, page string) string { return check + " (page " + page + ")" }

// checkToken asks the Graph API which Page the token is for.
func (d *doctor) checkToken(ctx context.Context, i int, page, token string) result {
	r := result{name: pageName("token", page)}
	raw, err := d.graph.call(ctx, http.MethodGet, token, "me", url.Values{"fields": {tokenFields}}, nil)
	var node pageNode
	if err == nil {
		err = decode(raw, &node)
	}
	switch ge := asGraphError(err); {
	case err == nil && string(node.ID) == page:
		r.status, r.detail = OK, fmt.Sprintf("accepted, the token of %q", node.Name)
	case err == nil:
		r.status = Fail
		r.detail = fmt.Sprintf("the token is page %s's, not this page's", node.ID)
		r.fix = fmt.Sprintf("put page %s's own access token in pages[%d].token of %s", page, i, d.configName())
	case ge != nil && ge.tokenRejected():
		r.status = Fail
		r.detail = "refused: " + ge.Error()
		r.fix = fmt.Sprintf("create a new page access token for page %s with the pages_messaging permission (a long-lived or system-user token) and put it in pages[%d].token of %s; the page's other checks need it",
			page, i, d.configName())
	default:
		r.status = Fail
		r.detail = "could not be checked: " + err.Error()
		r.fix = fmt.Sprintf("check graph.base_url (%s) and that this host reaches the Graph API, then run doctor again; the page's other checks need the token", d.cfg.Graph.BaseURL)
	}
	return r
}

// checkFeatures reports the Page's messaging feature status. It is a
// warning at worst: the default-app check below is the one that decides.
func (d *doctor) checkFeatures(ctx context.Context, page, token string) result {
	r := result{name: pageName("messaging features", page)}
	raw, err := d.graph.call(ctx, http.MethodGet, token, page, url.Values{"fields": {featureField}}, nil)
	var fs featureStatus
	if err == nil {
		err = decode(raw, &fs)
	}
	switch {
	case err != nil:
		r.status, r.detail = Warn, "could not be read: "+err.Error()
	case fs.Status == nil:
		r.status, r.detail = Warn, "the answer has no messaging_feature_status"
	case fs.routingOn():
		r.status = OK
		r.detail = fmt.Sprintf("Conversation Routing (msgr_multi_app=%t, hop_v2=%t)", fs.Status.MsgrMultiApp, fs.Status.HopV2)
	default:
		r.status = Warn
		r.detail = fmt.Sprintf("no Conversation Routing (msgr_multi_app=%t, hop_v2=%t): every app gets every message and take is refused", fs.Status.MsgrMultiApp, fs.Status.HopV2)
		r.fix = d.defaultAppFix(page)
	}
	return r
}

func (d *doctor) defaultAppFix(page string) string {
	return fmt.Sprintf("in page %s's settings (Advanced messaging, Conversation Routing) make app %s the default app", page, d.cfg.App.ID)
}

// appRef is an app the Page knows.
type appRef struct{ id, name string }

// checkDefaultApp asks for the Page's secondary receivers, which only the
// primary receiver, the default app, may read. On success it returns them:
// the other apps connected to the Page. others is nil when unknown.
func (d *doctor) checkDefaultApp(ctx context.Context, page, token string) (r result, others []appRef) {
	r = result{name: pageName("default app", page)}
	raw, err := d.graph.call(ctx, http.MethodGet, token, page+"/"+edgeSecondaryReceivers, url.Values{"fields": {"id,name"}}, nil)
	var list appList
	if err == nil {
		err = decode(raw, &list)
	}
	if err == nil {
		others = make([]appRef, 0, len(list.Data))
		for _, a := range list.Data {
			others = append(others, appRef{id: string(a.ID), name: a.Name})
		}
		r.status, r.detail = OK, fmt.Sprintf("app %s is the default app", d.cfg.App.ID)
		return r, others
	}
	if ge := asGraphError(err); ge != nil && ge.permission() {
		r.status = Fail
		r.detail = fmt.Sprintf("app %s is not the default app: %s refused: %s", d.cfg.App.ID, edgeSecondaryReceivers, ge.Error())
		r.fix = d.defaultAppFix(page) + ", so that new and idle conversations reach the bot"
		return r, nil
	}
	r.status, r.detail = Warn, "could not be checked: "+err.Error()
	r.fix = fmt.Sprintf("check in page %s's settings (Advanced messaging, Conversation Routing) that app %s is the default app", page, d.cfg.App.ID)
	return r, nil
}

// checkTake probes the take permission: take_thread_control for a
// recipient that is no user. Conversation Routing refuses an app that may
// not take (code 10) or a Page without routing (code 27) whatever the
// recipient, so those refusals fail the check; a refusal of the recipient
// (code 100) means the app itself was let through. No thread exists for
// the recipient, so nothing is taken. A missing permission fails the
// check only when a policy takes control; otherwise it is a warning.
func (d *doctor) checkTake(ctx context.Context, page, token string) result {
	r := result{name: pageName("take control", page)}
	body := map[string]any{"recipient": map[string]string{"id": probeRecipient}, "metadata": probeMetadata}
	_, err := d.graph.call(ctx, http.MethodPost, token, page+"/"+edgeTake, nil, body)
	refused := Warn
	why := "no policy takes control, but the take actions and timeouts would fail"
	if d.needs.take {
		refused, why = Fail, "the policies' take actions and timeouts would fail"
	}
	ge := asGraphError(err)
	switch {
	case err == nil:
		r.status, r.detail = OK, fmt.Sprintf("app %s may take control", d.cfg.App.ID)
	case ge != nil && ge.Code == 27:
		r.status = refused
		r.detail = fmt.Sprintf("take_thread_control is refused: Conversation Routing is not enabled (%s); %s", ge.Error(), why)
		r.fix = d.defaultAppFix(page)
	case ge != nil && ge.Code == 10 && ge.Subcode != 2018300:
		r.status = refused
		r.detail = fmt.Sprintf("app %s may not take control: %s; %s", d.cfg.App.ID, ge.Error(), why)
		r.fix = fmt.Sprintf("in page %s's settings (Advanced messaging) allow app %s to take control of conversations", page, d.cfg.App.ID)
	case ge != nil && ge.Code == 100:
		r.status, r.detail = OK, fmt.Sprintf("app %s may take control (the probe was refused only its made-up recipient)", d.cfg.App.ID)
	default:
		r.status, r.detail = Warn, "could not be checked: "+err.Error()
		r.fix = fmt.Sprintf("check in page %s's settings (Advanced messaging) that app %s may take control of conversations", page, d.cfg.App.ID)
		if ge == nil || ge.transient() {
			r.fix = "run doctor again once the Graph API answers"
		}
	}
	return r
}

// checkWebhookFields compares the app's webhook fields on the Page with
// those needed.
func (d *doctor) checkWebhookFields(ctx context.Context, page, token string) result {
	r := result{name: pageName("webhook fields", page)}
	need := d.needs.fields()
	raw, err := d.graph.call(ctx, http.MethodGet, token, page+"/"+edgeSubscribedApps, nil, nil)
	var subs subscribedApps
	if err == nil {
		err = decode(raw, &subs)
	}
	if err != nil {
		r.status, r.detail = Warn, "could not be read: "+err.Error()
		if ge := asGraphError(err); ge != nil && ge.permission() {
			r.status = Fail
			r.fix = fmt.Sprintf("give page %s's token the pages_manage_metadata permission so the subscription can be read, then run doctor again", page)
		}
		return r
	}
	var have []string
	found := false
	for _, a := range subs.Data {
		if string(a.ID) == d.cfg.App.ID {
			have, found = a.Fields, true
			break
		}
	}
	if !found {
		r.status = Fail
		r.detail = fmt.Sprintf("app %s is not subscribed to the page's webhooks", d.cfg.App.ID)
		r.fix = d.subscribeFix(page, need, need)
		return r
	}
	missing := missingFields(need, have)
	if len(missing) == 0 {
		r.status, r.detail = OK, "subscribed to "+strings.Join(need, ", ")
		return r
	}
	all := slices.Clone(have)
	for _, f := range missing {
		if !slices.Contains(all, f) {
			all = append(all, f)
		}
	}
	r.status = Fail
	r.detail = fmt.Sprintf("app %s's subscription lacks %s", d.cfg.App.ID, strings.Join(missing, ", "))
	r.fix = d.subscribeFix(page, missing, all)
	return r
}

// subscribeFix says how to subscribe the app to missing on page; the POST
// replaces the app's fields, so it names all of them.
func (d *doctor) subscribeFix(page string, missing, all []string) string {
	return fmt.Sprintf("subscribe app %s to %s on page %s in the app dashboard (Messenger, Webhooks), or POST /%s/%s?subscribed_fields=%s with the page's token",
		d.cfg.App.ID, strings.Join(missing, ", "), page, page, edgeSubscribedApps, strings.Join(all, ","))
}

// checkApps compares the apps named in apps: with those the Page knows.
func (d *doctor) checkApps(page string, others []appRef) result {
	r := result{name: pageName("apps", page)}
	names := make([]string, 0, len(d.cfg.Apps))
	for name := range d.cfg.Apps {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		r.status, r.detail = OK, "no other app is named in apps:"
		return r
	}
	if others == nil {
		r.status = Warn
		r.detail = "the page's apps could not be listed: only its default app may list them"
		r.fix = "fix the default app above, then run doctor again"
		return r
	}
	var unknown []string
	for _, name := range names {
		id := d.cfg.Apps[name]
		if !slices.ContainsFunc(others, func(a appRef) bool { return a.id == id }) {
			unknown = append(unknown, fmt.Sprintf("%s (%s)", name, id))
		}
	}
	if len(unknown) == 0 {
		r.status, r.detail = OK, "known to the page: "+strings.Join(names, ", ")
		return r
	}
	r.status = Fail
	r.detail = "not connected to the page: " + strings.Join(unknown, ", ")
	r.fix = fmt.Sprintf("connect each app to page %s (install it on the Page, or link it in Meta Business Suite), or correct its id under apps: in %s", page, d.configName())
	return r
}

// checkBot sends a GET to the bot's URL. Any answer below 500 means it is
// up, as Baton's own probe of the bot judges it: a bot may refuse a GET.
func (d *doctor) checkBot(ctx context.Context) result {
	r := result{name: "bot url"}
	where := safeURL(d.cfg.Bot.URL)
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.cfg.Bot.URL, nil)
	if err != nil {
		r.status, r.detail = Fail, fmt.Sprintf("%s is not a usable URL", where)
		r.fix = "correct bot.url in " + d.configName()
		return r
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		r.status = Fail
		r.detail = fmt.Sprintf("%s does not answer: %v", where, transportError(err))
		r.fix = fmt.Sprintf("start the bot, or correct bot.url in %s; check that this host reaches it", d.configName())
		return r
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		r.status = Fail
		r.detail = fmt.Sprintf("%s answers HTTP %d", where, resp.StatusCode)
		r.fix = "look at the bot's logs: it is up but failing"
		return r
	}
	r.status, r.detail = OK, fmt.Sprintf("%s answers (HTTP %d to a GET)", where, resp.StatusCode)
	return r
}

// safeURL is the bot's URL without user info or query, which may hold
// credentials.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "bot.url"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// checkClock compares the local clock with the Graph API's Date headers.
func (d *doctor) checkClock() result {
	r := result{name: "clock"}
	skew, ok := clockSkew(d.graph.dates)
	if !ok {
		r.status, r.detail = Warn, "not checked: no Graph API answer carried a Date header"
		return r
	}
	abs := skew.Abs().Round(time.Second)
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	if skew.Abs() > d.maxSkew {
		r.status = Fail
		r.detail = fmt.Sprintf("%s %s the Graph API's (more than %s)", abs, dir, d.maxSkew)
		r.fix = "synchronise this host's clock (NTP: chrony, systemd-timesyncd); Baton's timeouts, control expiry and the messaging window use it"
		return r
	}
	r.status, r.detail = OK, fmt.Sprintf("within %s of the Graph API's (off by %s)", d.maxSkew, abs)
	return r
}

func (d *doctor) configName() string {
	if d.cfg.File != "" {
		return d.cfg.File
	}
	return "the config file"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
