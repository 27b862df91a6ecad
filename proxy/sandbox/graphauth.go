package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"
)

// appsecret_proof (Graph API "Securing Requests"): the hex HMAC-SHA256 of
// the access token keyed by the app secret, sent as a parameter beside
// the token. An app with "Require App Secret" on refuses calls without
// it; a proof that is sent is checked whether or not the app requires
// one.

// errProofRequired is Meta's answer to a call without appsecret_proof to
// an app that requires it.
func errProofRequired() *APIError {
	return newAPIError(400, "API calls from the server require an appsecret_proof argument", "GraphMethodException", 100, 0)
}

// errProofInvalid is Meta's answer to a wrong appsecret_proof.
func errProofInvalid() *APIError {
	return newAPIError(400, "Invalid appsecret_proof provided in the API argument", "GraphMethodException", 100, 0)
}

// AppSecretProof is the proof a caller must send with token for an app
// whose secret is secret.
func AppSecretProof(token, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// checkProof applies the app's appsecret_proof rule to a request made
// with token.
func (p *Platform) checkProof(ctx *fasthttp.RequestCtx, token string, owner tokenOwner) *APIError {
	a := p.apps[owner.app]
	if a == nil {
		return nil
	}
	proof, sent := requestProof(ctx)
	if !sent {
		if a.spec.RequireAppSecretProof {
			return errProofRequired()
		}
		return nil
	}
	got, err := hex.DecodeString(proof)
	want, _ := hex.DecodeString(AppSecretProof(token, a.spec.Secret)) // our own hex
	if err != nil || !hmac.Equal(got, want) {
		return errProofInvalid()
	}
	return nil
}

// requestProof finds appsecret_proof where Graph accepts parameters: the
// query, a form body or a JSON body.
func requestProof(ctx *fasthttp.RequestCtx) (string, bool) {
	if v := ctx.QueryArgs().Peek("appsecret_proof"); v != nil {
		return string(v), true
	}
	body := bytes.TrimSpace(ctx.PostBody())
	if len(body) == 0 {
		return "", false
	}
	if bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("application/x-www-form-urlencoded")) {
		if v := ctx.PostArgs().Peek("appsecret_proof"); v != nil {
			return string(v), true
		}
		return "", false
	}
	var params struct {
		Proof *string `json:"appsecret_proof"`
	}
	if json.Unmarshal(body, &params) != nil || params.Proof == nil {
		return "", false
	}
	return *params.Proof, true
}

// Usage is what the platform reports in a usage header, each figure in
// percent of the limit: throttling starts at 100 (reference 9).
type Usage struct {
	CallCount, TotalTime, TotalCPUTime int
	// RegainMinutes is estimated_time_to_regain_access, reported in the
	// business-use-case header only.
	RegainMinutes int
}

// usageState is what SetAppUsage and SetBusinessUsage set; under
// Platform.mu.
type usageState struct {
	app      *Usage
	business map[string]*Usage // by page
}

// SetAppUsage makes every later Graph answer carry X-App-Usage with u;
// nil stops it.
func (p *Platform) SetAppUsage(u *Usage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.usage.app = copyUsage(u)
}

// SetBusinessUsage makes every later Graph answer for page carry
// X-Business-Use-Case-Usage with u, as a "messenger" entry under the page
// id; nil stops it.
func (p *Platform) SetBusinessUsage(page string, u *Usage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.usage.business == nil {
		p.usage.business = make(map[string]*Usage)
	}
	if u == nil {
		delete(p.usage.business, page)
		return
	}
	p.usage.business[page] = copyUsage(u)
}

func copyUsage(u *Usage) *Usage {
	if u == nil {
		return nil
	}
	c := *u
	return &c
}

// usageHeaders adds the usage headers set for page to an answer.
func (p *Platform) usageHeaders(ctx *fasthttp.RequestCtx, page string) {
	p.mu.Lock()
	app, business := copyUsage(p.usage.app), copyUsage(p.usage.business[page])
	p.mu.Unlock()
	if app != nil {
		ctx.Response.Header.Set("X-App-Usage", `{"call_count":`+strconv.Itoa(app.CallCount)+
			`,"total_cputime":`+strconv.Itoa(app.TotalCPUTime)+`,"total_time":`+strconv.Itoa(app.TotalTime)+`}`)
	}
	if business != nil && page != "" {
		entry, err := json.Marshal(map[string][]map[string]any{page: {{
			"type": "messenger", "call_count": business.CallCount, "total_cputime": business.TotalCPUTime,
			"total_time": business.TotalTime, "estimated_time_to_regain_access": business.RegainMinutes,
		}}})
		if err == nil { // cannot fail: strings and ints
			ctx.Response.Header.SetBytesV("X-Business-Use-Case-Usage", entry)
		}
	}
}
