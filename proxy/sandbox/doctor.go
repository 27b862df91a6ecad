package sandbox

// The set-up reads of the Graph API: what `baton doctor` asks about a Page
// before anything is sent. They answer from the platform's own state (its
// pages, apps, default app and the webhook fields each app subscribed to on
// each page), so a test can break one thing and see doctor notice it.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// DefaultSubscribedFields are the webhook fields every app is subscribed to
// on every page until SetSubscribedFields or a POST to subscribed_apps
// changes them: the fields Baton and its policies can use.
var DefaultSubscribedFields = []string{
	"messages", "messaging_postbacks", "message_echoes", "messaging_handovers", "standby",
	"messaging_referrals", "messaging_optins", "messaging_feedback",
	"message_deliveries", "message_reads",
}

// pageInboxID is the Page Inbox's app id (reference 5.5), named as such in
// secondary_receivers.
const pageInboxID = "263902037430900"

type subKey struct{ page, app string }

// SetSubscribedFields replaces the webhook fields appID is subscribed to on
// page (none: the app is not subscribed there and is left out of
// subscribed_apps). Unknown pages or apps are ignored.
func (p *Platform) SetSubscribedFields(page, appID string, fields ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pages[page] || p.apps[appID] == nil {
		p.log.Warn("set subscribed fields for an unknown page or app")
		return
	}
	p.subscriptionsLocked()[subKey{page, appID}] = slices.Clone(fields)
}

// SubscribedFields returns the webhook fields appID is subscribed to on
// page.
func (p *Platform) SubscribedFields(page, appID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.subscribedLocked(page, appID))
}

// subscriptionsLocked returns the explicit subscriptions, made on first use
// so Start does not need to know about them.
func (p *Platform) subscriptionsLocked() map[subKey][]string {
	if p.subs == nil {
		p.subs = make(map[subKey][]string)
	}
	return p.subs
}

func (p *Platform) subscribedLocked(page, appID string) []string {
	if fields, ok := p.subscriptionsLocked()[subKey{page, appID}]; ok {
		return fields
	}
	return DefaultSubscribedFields
}

// --- node reads: GET /{page}?fields=... (and /me) ---

type featureStatus struct {
	HopV2        bool `json:"hop_v2"`
	MsgrMultiApp bool `json:"msgr_multi_app"`
	IGMultiApp   bool `json:"ig_multi_app"`
}

// serveNode answers a read of the Page node. The fields served are id,
// name and messaging_feature_status (reference 5.1): hop_v2 is always on,
// as under Conversation Routing; msgr_multi_app says whether routing among
// the apps is set up, which here means a default app is set.
func (p *Platform) serveNode(ctx *fasthttp.RequestCtx, method, page string) (any, *APIError) {
	if method != fasthttp.MethodGet {
		return nil, errUnsupported(method, page)
	}
	fields := string(ctx.QueryArgs().Peek("fields"))
	if fields == "" {
		fields = "id,name"
	}
	out := map[string]any{}
	for _, f := range strings.Split(fields, ",") {
		switch f = strings.TrimSpace(f); f {
		case "id":
			out["id"] = page
		case "name":
			out["name"] = "Sandbox Page " + page
		case "messaging_feature_status":
			out["messaging_feature_status"] = featureStatus{HopV2: true, MsgrMultiApp: p.defaultApp != ""}
		case "":
		default:
			return nil, newParamError(fmt.Sprintf("Tried accessing nonexisting field (%s) on node type (Page)", f))
		}
	}
	out["id"] = page // Graph always includes the id
	return out, nil
}

// --- edges: subscribed_apps, secondary_receivers ---

type subscribedApp struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	SubscribedFields []string `json:"subscribed_fields"`
}

type appRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type listResponse[T any] struct {
	Data []T `json:"data"`
}

// serveSetupEdge answers the set-up edges; ok is false for any other
// endpoint, which routeGraph then handles as before.
func (p *Platform) serveSetupEdge(ctx *fasthttp.RequestCtx, method, appID, page, endpoint string) (result any, e *APIError, ok bool) {
	switch endpoint {
	case "subscribed_apps":
		if method != fasthttp.MethodGet && method != fasthttp.MethodPost {
			return nil, errUnsupported(method, page), true
		}
	case "secondary_receivers":
		if method != fasthttp.MethodGet {
			return nil, errUnsupported(method, page), true
		}
	default:
		return nil, nil, false
	}
	if f := p.takeFault(endpoint); f != nil {
		return nil, f, true
	}
	switch {
	case endpoint == "secondary_receivers":
		result, e = p.secondaryReceivers(appID)
	case method == fasthttp.MethodGet:
		result = p.subscribedApps(page)
	default:
		result, e = p.subscribe(ctx, appID, page)
	}
	return result, e, true
}

// subscribedApps lists the apps subscribed to page's webhooks, with their
// fields, in the order of Options.Apps.
func (p *Platform) subscribedApps(page string) listResponse[subscribedApp] {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := listResponse[subscribedApp]{Data: []subscribedApp{}}
	for _, id := range p.appOrder {
		if fields := p.subscribedLocked(page, id); len(fields) > 0 {
			out.Data = append(out.Data, subscribedApp{ID: id, Name: appName(id), SubscribedFields: slices.Clone(fields)})
		}
	}
	return out
}

// subscribe sets the caller's fields on page from subscribed_fields, given
// as "a,b,c" or as a JSON array, as Graph accepts both.
func (p *Platform) subscribe(ctx *fasthttp.RequestCtx, appID, page string) (any, *APIError) {
	raw := ctx.QueryArgs().Peek("subscribed_fields")
	if len(raw) == 0 {
		raw = ctx.PostArgs().Peek("subscribed_fields")
	}
	fields, e := parseFieldList(raw)
	if e != nil {
		return nil, e
	}
	p.mu.Lock()
	p.subscriptionsLocked()[subKey{page, appID}] = fields
	p.mu.Unlock()
	return successResponse{Success: true}, nil
}

func parseFieldList(raw []byte) ([]string, *APIError) {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return nil, newParamError("param subscribed_fields is required")
	}
	var fields []string
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &fields); err != nil {
			return nil, newParamError("param subscribed_fields must be a list of field names")
		}
	} else {
		fields = strings.Split(s, ",")
	}
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !isFieldName(f) {
			return nil, newParamError(fmt.Sprintf("param subscribed_fields[%q] is not a valid field", f))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, newParamError("param subscribed_fields is required")
	}
	return out, nil
}

func isFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// secondaryReceivers answers only the primary receiver, which under
// Conversation Routing is the default app (reference 5.1: "Primary
// Receiver only"), with every other app connected to the Page.
func (p *Platform) secondaryReceivers(appID string) (any, *APIError) {
	if p.defaultApp == "" || appID != p.defaultApp {
		return nil, newAPIError(400, "(#10) Only the primary receiver (default app) of this Page can read its secondary receivers",
			"OAuthException", 10, 0)
	}
	out := listResponse[appRef]{Data: []appRef{}}
	for _, id := range p.appOrder {
		if id != appID {
			out.Data = append(out.Data, appRef{ID: id, Name: appName(id)})
		}
	}
	return out, nil
}

func appName(id string) string {
	if id == pageInboxID {
		return "Page Inbox"
	}
	return "Sandbox app " + id
}
