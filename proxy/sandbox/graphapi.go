package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// APIError is a Graph API error as Meta returns it (reference 6.1). The
// in-process app actions return the same values the HTTP API would send.
type APIError struct {
	HTTPStatus int
	Message    string
	Type       string
	Code       int
	Subcode    int
	FBTraceID  string
}

// Error implements error.
func (e *APIError) Error() string {
	if e.Subcode != 0 {
		return fmt.Sprintf("graph API error %d/%d (HTTP %d): %s", e.Code, e.Subcode, e.HTTPStatus, e.Message)
	}
	return fmt.Sprintf("graph API error %d (HTTP %d): %s", e.Code, e.HTTPStatus, e.Message)
}

type errorEnvelope struct {
	Error errorFields `json:"error"`
}

type errorFields struct {
	Message   string `json:"message"`
	Type      string `json:"type"`
	Code      int    `json:"code"`
	Subcode   int    `json:"error_subcode,omitempty"`
	FBTraceID string `json:"fbtrace_id"`
}

// body renders e in Meta's {"error":{...}} shape.
func (e *APIError) body() []byte {
	b, err := json.Marshal(errorEnvelope{Error: errorFields{
		Message: e.Message, Type: e.Type, Code: e.Code, Subcode: e.Subcode, FBTraceID: e.FBTraceID,
	}})
	if err != nil { // cannot happen: only strings and ints
		return []byte(`{"error":{"message":"internal error","type":"OAuthException","code":1}}`)
	}
	return b
}

func newAPIError(status int, message, typ string, code, subcode int) *APIError {
	return &APIError{HTTPStatus: status, Message: message, Type: typ, Code: code, Subcode: subcode, FBTraceID: newTraceID()}
}

const traceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// newTraceID makes an fbtrace_id-looking random string; Baton should log it
// and never depend on its value.
func newTraceID() string {
	var b [11]byte
	for i := range b {
		b[i] = traceAlphabet[rand.IntN(len(traceAlphabet))]
	}
	return string(b[:])
}

// The errors the platform rules produce (codes from reference 6.2).

func errBadToken() *APIError {
	return newAPIError(400, "Invalid OAuth access token.", "OAuthException", 190, 0)
}

func errAnotherAppControls() *APIError {
	return newAPIError(400, "(#10) Message failed to send because another app is controlling this thread now.",
		"OAuthException", 10, 2018300)
}

func errNotThreadOwner() *APIError {
	return newAPIError(400, "(#100) This action is invalid because the app is not the thread owner.",
		"OAuthException", 100, 2534037)
}

func errAlreadyOwner() *APIError {
	return newAPIError(400, "(#100) The app already controls this thread.", "OAuthException", 100, 0)
}

func errUnknownApp(id string) *APIError {
	return newAPIError(400, fmt.Sprintf("(#100) Param target_app_id %q is not an app connected to this Page", id),
		"OAuthException", 100, 0)
}

func errTakeNeedsRouting() *APIError {
	return newAPIError(400, "(#27) Take thread control is not supported when Conversation Routing is not enabled",
		"OAuthException", 27, 0)
}

func errNoTakePermission() *APIError {
	return newAPIError(400, "(#10) This app does not have permission to take control of conversations on this Page.",
		"OAuthException", 10, 0)
}

func errNoMatchingUser() *APIError {
	return newAPIError(400, "(#100) No matching user found", "OAuthException", 100, 2018001)
}

func newParamError(msg string) *APIError {
	return newAPIError(400, "(#100) "+msg, "OAuthException", 100, 0)
}

func errUnknownPath(detail string) *APIError {
	return newAPIError(400, "Unknown path components: "+detail, "OAuthException", 2500, 0)
}

func errUnsupported(method, id string) *APIError {
	return newAPIError(400, fmt.Sprintf("Unsupported %s request. Object with ID '%s' does not exist, "+
		"cannot be loaded due to missing permissions, or does not support this operation. "+
		"Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
		strings.ToLower(method), id), "GraphMethodException", 100, 33)
}

// injectedError builds a FailNext error, using Meta's wording for the codes
// Baton is likely to classify so that message-based fallbacks work too.
func injectedError(status, code, subcode int) *APIError {
	var msg string
	switch {
	case code == 10 && subcode == 2018300:
		return errAnotherAppControls()
	case code == 190:
		msg = "Invalid OAuth access token."
	case code == 1:
		msg = "An unknown error occurred"
	case code == 2:
		msg = "An unexpected error has occurred. Please retry your request later."
	case code == 4:
		msg = "(#4) Application request limit reached"
	case code == 17:
		msg = "(#17) User request limit reached"
	case code == 613:
		msg = "(#613) Calls to this api have exceeded the rate limit."
	default:
		msg = fmt.Sprintf("(#%d) Injected failure (sandbox)", code)
	}
	return newAPIError(status, msg, "OAuthException", code, subcode)
}

// --- request parsing ---

// flexID accepts an id sent as a JSON string or as a JSON integer, as
// Graph does (e.g. "target_app_id": 263902037430900).
type flexID string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexID) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("id: %w", err)
		}
		*f = flexID(s)
	case isDigits(string(b)):
		*f = flexID(b)
	default:
		return fmt.Errorf("id %s: want a string or an integer", b)
	}
	return nil
}

type graphParams struct {
	Recipient *struct {
		ID flexID `json:"id"`
	} `json:"recipient"`
	MessagingType string        `json:"messaging_type"`
	Tag           string        `json:"tag"`
	Message       *messageParam `json:"message"`
	SenderAction  string        `json:"sender_action"`
	TargetAppID   flexID        `json:"target_app_id"`
	Metadata      string        `json:"metadata"`
	Duration      flexID        `json:"duration"`
	ThreadControl *struct {
		ControlType string `json:"control_type"`
		AppID       flexID `json:"app_id"`
	} `json:"thread_control"`
}

type messageParam struct {
	Text         string          `json:"text"`
	Attachment   json.RawMessage `json:"attachment"`
	QuickReplies json.RawMessage `json:"quick_replies"`
	Metadata     string          `json:"metadata"`
}

func (g *graphParams) recipientID() (string, *APIError) {
	if g.Recipient == nil || g.Recipient.ID == "" {
		return "", newParamError("param recipient[id] is required")
	}
	return string(g.Recipient.ID), nil
}

// parseParams merges query-string, form and JSON-body parameters: Graph
// accepts all three, with JSON objects passed as strings in forms.
func parseParams(ctx *fasthttp.RequestCtx) (graphParams, *APIError) {
	fields := map[string]json.RawMessage{}
	addArgs := func(args *fasthttp.Args) {
		for k, v := range args.All() {
			if key := string(k); key != "access_token" {
				fields[key] = argJSON(v)
			}
		}
	}
	addArgs(ctx.QueryArgs())
	if body := bytes.TrimSpace(ctx.PostBody()); len(body) > 0 {
		if bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("application/x-www-form-urlencoded")) {
			addArgs(ctx.PostArgs())
		} else {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				return graphParams{}, newParamError("the request body is not a JSON object: " + err.Error())
			}
			maps.Copy(fields, m)
		}
	}
	merged, err := json.Marshal(fields)
	if err != nil {
		return graphParams{}, newParamError("invalid parameters: " + err.Error())
	}
	var gp graphParams
	if err := json.Unmarshal(merged, &gp); err != nil {
		return graphParams{}, newParamError("invalid parameter: " + err.Error())
	}
	return gp, nil
}

// argJSON turns a query or form value into JSON: objects and arrays are
// taken as JSON, anything else as a string.
func argJSON(v []byte) json.RawMessage {
	t := bytes.TrimSpace(v)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t) {
		return append(json.RawMessage(nil), t...)
	}
	b, _ := json.Marshal(string(v)) // a string always marshals
	return b
}

// requestToken finds the access token: access_token in the query or form,
// or an "Authorization: Bearer|OAuth <token>" header.
func requestToken(ctx *fasthttp.RequestCtx) string {
	if t := ctx.QueryArgs().Peek("access_token"); len(t) > 0 {
		return string(t)
	}
	if bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("application/x-www-form-urlencoded")) {
		if t := ctx.PostArgs().Peek("access_token"); len(t) > 0 {
			return string(t)
		}
	}
	auth := string(ctx.Request.Header.Peek("Authorization"))
	for _, scheme := range []string{"Bearer ", "OAuth "} {
		if len(auth) > len(scheme) && strings.EqualFold(auth[:len(scheme)], scheme) {
			return strings.TrimSpace(auth[len(scheme):])
		}
	}
	return ""
}

// validateOutgoing applies the Send API's parameter rules (reference 8).
func validateOutgoing(m outgoing) *APIError {
	if m.senderAction != "" {
		switch m.senderAction {
		case "typing_on", "typing_off", "mark_seen":
		default:
			return newParamError("param sender_action must be one of {typing_on, typing_off, mark_seen}")
		}
		if m.text != "" || len(m.attachment) > 0 {
			return newParamError("sender_action must be sent alone with recipient")
		}
		return nil
	}
	switch {
	case m.text == "" && len(m.attachment) == 0:
		return newParamError("Message cannot be empty, must provide valid attachment or text")
	case m.text != "" && len(m.attachment) > 0:
		return newParamError("message must contain either text or attachment, not both")
	case utf8.RuneCountInString(m.text) > 2000:
		return newParamError("Length of param message[text] must be less than or equal to 2000")
	case len(m.metadata) >= 1000:
		return newParamError("Length of param message[metadata] must be less than 1000")
	}
	if m.control != nil && m.control.controlType != "pass" && m.control.controlType != "release" {
		return newParamError("param thread_control[control_type] must be one of {pass, release}")
	}
	return nil
}

// attachmentType returns message.attachment.type, "" if unreadable.
func attachmentType(raw []byte) string {
	var a struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &a) != nil {
		return ""
	}
	return a.Type
}

// --- HTTP handler ---

// endpointMethods lists the Page edges the sandbox serves.
var endpointMethods = map[string]string{
	"messages":               fasthttp.MethodPost,
	"pass_thread_control":    fasthttp.MethodPost,
	"take_thread_control":    fasthttp.MethodPost,
	"release_thread_control": fasthttp.MethodPost,
	"request_thread_control": fasthttp.MethodPost,
	"extend_thread_control":  fasthttp.MethodPost,
	"thread_owner":           fasthttp.MethodGet,
}

type sendResponse struct {
	RecipientID string `json:"recipient_id"`
	MessageID   string `json:"message_id,omitempty"` // absent for sender actions
}

type successResponse struct {
	Success bool `json:"success"`
}

type threadOwnerResponse struct {
	Data []threadOwnerEntry `json:"data"`
}

type threadOwnerEntry struct {
	ThreadOwner threadOwnerInfo `json:"thread_owner"`
}

type threadOwnerInfo struct {
	AppID      string `json:"app_id,omitempty"`
	Expiration int64  `json:"expiration"`
}

// serveGraph answers one Graph API request and records it in Calls.
func (p *Platform) serveGraph(ctx *fasthttp.RequestCtx) {
	call := Call{Method: string(ctx.Method()), Body: string(ctx.PostBody())}
	result, apiErr := p.routeGraph(ctx, &call)
	status := fasthttp.StatusOK
	var body []byte
	if apiErr == nil {
		var err error
		if body, err = json.Marshal(result); err != nil {
			apiErr = newAPIError(500, "An unknown error occurred", "OAuthException", 1, 0)
			p.log.Error("marshal graph response", zap.Error(err))
		}
	}
	if apiErr != nil {
		status = apiErr.HTTPStatus
		call.Code, call.Subcode = apiErr.Code, apiErr.Subcode
		body = apiErr.body()
		p.log.Debug("graph call failed", zap.String("app", call.AppID), zap.String("endpoint", call.Endpoint),
			zap.Int("code", apiErr.Code), zap.Int("subcode", apiErr.Subcode))
	}
	call.Status = status
	p.usageHeaders(ctx, call.Page)

	p.mu.Lock()
	p.calls = append(p.calls, call)
	p.mu.Unlock()

	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json; charset=UTF-8")
	ctx.SetBody(body)
}

// routeGraph checks version, token, page and method, then runs the edge.
// It fills call's AppID, Page and Endpoint as soon as they are known.
func (p *Platform) routeGraph(ctx *fasthttp.RequestCtx, call *Call) (any, *APIError) {
	path := string(ctx.Path())
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) >= 2 {
		call.Page = parts[1]
	}
	if len(parts) >= 3 {
		call.Endpoint = parts[2]
	}
	if parts[0] != p.version {
		return nil, errUnknownPath(fmt.Sprintf("%s (this sandbox serves Graph %s)", path, p.version))
	}
	token := requestToken(ctx)
	tok, ok := p.tokens[token]
	if !ok {
		return nil, errBadToken()
	}
	call.AppID = tok.app
	if e := p.checkProof(ctx, token, tok); e != nil {
		return nil, e
	}
	if len(parts) != 2 && len(parts) != 3 {
		return nil, errUnknownPath(path)
	}
	page := parts[1]
	if page == "me" { // a Page token's "me" is the Page
		page = tok.page
		call.Page = page
	}
	if page != tok.page {
		return nil, errUnsupported(call.Method, parts[1])
	}
	if len(parts) == 2 {
		return p.serveNode(ctx, call.Method, page)
	}
	endpoint := parts[2]
	if result, e, ok := p.serveSetupEdge(ctx, call.Method, tok.app, page, endpoint); ok {
		return result, e
	}
	method, known := endpointMethods[endpoint]
	if !known {
		return nil, newParamError(fmt.Sprintf("Tried accessing nonexisting field (%s) on node type (Page)", endpoint))
	}
	if call.Method != method {
		return nil, errUnsupported(call.Method, page)
	}
	if f := p.takeFault(endpoint); f != nil {
		return nil, f
	}

	if endpoint == "thread_owner" {
		return p.handleThreadOwner(ctx, tok.app, page)
	}
	params, e := parseParams(ctx)
	if e != nil {
		return nil, e
	}
	user, e := params.recipientID()
	if e != nil {
		return nil, e
	}
	page = p.conversationAccount(page, user)
	switch endpoint {
	case "messages":
		return p.handleMessages(tok.app, page, user, &params)
	case "pass_thread_control":
		e = p.pass(tok.app, page, user, string(params.TargetAppID), params.Metadata)
	case "take_thread_control":
		e = p.take(tok.app, page, user, params.Metadata)
	case "release_thread_control":
		e = p.release(tok.app, page, user, params.Metadata)
	case "request_thread_control":
		e = p.request(tok.app, page, user, params.Metadata)
	case "extend_thread_control":
		secs, err := strconv.ParseInt(string(params.Duration), 10, 64)
		if err != nil {
			return nil, newParamError("param duration must be a number of seconds")
		}
		e = p.extend(tok.app, page, user, secs)
	}
	if e != nil {
		return nil, e
	}
	return successResponse{Success: true}, nil
}

func (p *Platform) handleMessages(appID, page, user string, params *graphParams) (any, *APIError) {
	out := outgoing{senderAction: params.SenderAction}
	if params.Message != nil {
		out.text = params.Message.Text
		out.metadata = params.Message.Metadata
		if a := bytes.TrimSpace(params.Message.Attachment); len(a) > 0 && string(a) != "null" {
			out.attachment = a
		}
		if e := checkQuickReplies(params.Message.QuickReplies); e != nil {
			return nil, e
		}
	}
	if out.senderAction == "" {
		switch params.MessagingType {
		case "RESPONSE", "UPDATE", "UTILITY":
		case "MESSAGE_TAG":
			if params.Tag == "" {
				return nil, newParamError("param tag is required when messaging_type is MESSAGE_TAG")
			}
		case "":
			return nil, newParamError("param messaging_type is required")
		default:
			return nil, newParamError("param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG, UTILITY}")
		}
	}
	if tc := params.ThreadControl; tc != nil {
		out.control = &threadControl{controlType: tc.ControlType, appID: string(tc.AppID)}
	}
	mid, e := p.send(appID, page, user, out)
	if e != nil {
		return nil, e
	}
	return sendResponse{RecipientID: user, MessageID: mid}, nil
}

// checkQuickReplies enforces the documented maximum of 13 quick replies.
func checkQuickReplies(raw json.RawMessage) *APIError {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var qrs []json.RawMessage
	if err := json.Unmarshal(raw, &qrs); err != nil {
		return newParamError("param message[quick_replies] must be an array")
	}
	if len(qrs) > 13 {
		return newParamError("param message[quick_replies] must have at most 13 elements")
	}
	return nil
}

func (p *Platform) handleThreadOwner(ctx *fasthttp.RequestCtx, appID, page string) (any, *APIError) {
	user := string(ctx.QueryArgs().Peek("recipient"))
	if user == "" {
		return nil, newParamError("param recipient is required")
	}
	owner, showApp, expires, e := p.threadOwner(appID, p.conversationAccount(page, user), user)
	if e != nil {
		return nil, e
	}
	resp := threadOwnerResponse{Data: []threadOwnerEntry{}} // [] rather than null when idle
	if owner != "" {
		info := threadOwnerInfo{Expiration: expires.Unix()}
		if showApp {
			info.AppID = owner
		}
		resp.Data = append(resp.Data, threadOwnerEntry{ThreadOwner: info})
	}
	return resp, nil
}
