package doctor

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The answers doctor reads are decoded with encoding/json into structs,
// except ids, which take a string or a number (graphID): the fuzz targets
// feed them, the error envelope and the Date header whatever comes.

func FuzzDecodeAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"id":"104455667788990","name":"Acme"}`,
		`{"id":104455667788990,"name":"Acme"}`,
		`{"messaging_feature_status":{"hop_v2":true,"msgr_multi_app":false,"ig_multi_app":false},"id":"1"}`,
		`{"data":[{"id":"555","name":"Bot","subscribed_fields":["messages","standby"]}]}`,
		`{"data":[{"id":263902037430900,"name":"Page Inbox"}]}`,
		`{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"fbtrace_id":"x"}}`,
		`{"error":"a string"}`,
		`{"id":1.5e3}`, `{"id":-1}`, `{"id":null}`, `{"data":null}`, `[]`, `null`, ``, `<html>`,
	} {
		f.Add(200, []byte(seed))
		f.Add(400, []byte(seed))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		ge := decodeError(status, body)
		if ge != nil {
			msg := ge.Error()
			if strings.ContainsAny(ge.Message, "\n\r") {
				t.Errorf("error message spans lines: %q", msg)
			}
			if utf8.RuneCountInString(ge.Message) > 260 {
				t.Errorf("error message not shortened: %d runes", utf8.RuneCountInString(ge.Message))
			}
		} else if status < 200 || status > 299 {
			t.Errorf("status %d passed as a success", status)
		}
		var node pageNode
		if decode(body, &node) == nil && node.ID != "" && !json.Valid(body) {
			t.Errorf("an id was read from invalid JSON %q", body)
		}
		var fs featureStatus
		_ = decode(body, &fs)
		_ = fs.routingOn()
		var subs subscribedApps
		if decode(body, &subs) == nil {
			for _, a := range subs.Data {
				_ = missingFields(baseFields, a.Fields)
			}
		}
		var apps appList
		_ = decode(body, &apps)
	})
}

func FuzzGraphID(f *testing.F) {
	for _, seed := range []string{`"123"`, `123`, `null`, `"a\"b"`, `1e5`, `-3`, `""`, `true`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var id graphID
		if err := id.UnmarshalJSON(raw); err != nil {
			return
		}
		// A number is kept digit for digit, never through a float.
		if len(raw) > 0 && raw[0] >= '0' && raw[0] <= '9' && string(id) != strings.TrimSpace(string(raw)) {
			t.Errorf("number %q read as %q", raw, id)
		}
	})
}

func FuzzClockSkew(f *testing.F) {
	for _, seed := range []string{"Thu, 03 Dec 2026 13:45:15 GMT", "Thursday, 03-Dec-26 13:45:15 GMT", "Thu Dec  3 13:45:15 2026", "", "yesterday"} {
		f.Add(seed)
	}
	local := time.Date(2026, 12, 3, 13, 45, 15, 0, time.UTC)
	f.Fuzz(func(t *testing.T, header string) {
		skew, ok := clockSkew([]dateSample{{header: header, local: local}})
		if !ok && skew != 0 {
			t.Errorf("no skew read, yet %s", skew)
		}
	})
}

func FuzzScanPolicy(f *testing.F) {
	for _, seed := range []string{policyWithTake, policyPassOnly, policyReferral, "a: &x {b: 1}\nc: *x\n", "- - - [", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n policyNeeds
		if scanPolicy(data, &n) != nil {
			return
		}
		fields := n.fields()
		if !slices.Equal(fields[:len(baseFields)], baseFields) {
			t.Errorf("fields %v do not start with Baton's own", fields)
		}
	})
}

func TestPolicyNeeds(t *testing.T) {
	cases := []struct {
		yaml string
		want policyNeeds
	}{
		{policyWithTake, policyNeeds{take: true}},
		{policyPassOnly, policyNeeds{}},
		{policyReferral, policyNeeds{referrals: true}},
		{"rules:\n  - when: {optin: {refs: [x]}}\n    do: [{send_feedback: {title: t}}]\n", policyNeeds{optins: true, feedback: true}},
		{"timeouts:\n  agent_idle: {after: 30m, do: [{take: {}}]}\n", policyNeeds{take: true}},
		// referral outside a when is a postback's, not a trigger.
		{"rules:\n  - when: {postbacks: [A]}\n    referral: x\n", policyNeeds{}},
	}
	for _, c := range cases {
		var got policyNeeds
		if err := scanPolicy([]byte(c.yaml), &got); err != nil {
			t.Fatalf("scanPolicy(%q): %v", c.yaml, err)
		}
		if got != c.want {
			t.Errorf("scanPolicy(%q) = %+v, want %+v", c.yaml, got, c.want)
		}
	}
	if _, err := readNeeds([]string{"does-not-exist.yaml"}); err == nil {
		t.Error("readNeeds of a missing file succeeded")
	}
}

func TestMissingFields(t *testing.T) {
	need := []string{"messages", "messaging_handovers", "messaging_referrals", "standby"}
	got := missingFields(need, []string{"messages", "messaging_handover", "messaging_referral"})
	if !slices.Equal(got, []string{"standby"}) {
		t.Errorf("missingFields = %v, want [standby]", got)
	}
}
