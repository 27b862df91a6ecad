package sandbox

import (
	"net/http"
	"slices"
	"testing"
)

func TestNodeReadsIDNameAndFeatureStatus(t *testing.T) {
	f := newFixture(t, botID)
	tok := f.p.Token(testPage, botID)

	r := graph(t, f.p, http.MethodGet, "/v25.0/me?fields=id,name,messaging_feature_status", tok, nil)
	if r.status != 200 || r.body["id"] != testPage || r.body["name"] == "" {
		t.Fatalf("GET /me = %d %v", r.status, r.body)
	}
	fs, _ := r.body["messaging_feature_status"].(map[string]any)
	if fs["hop_v2"] != true || fs["msgr_multi_app"] != true {
		t.Errorf("messaging_feature_status = %v, want hop_v2 and msgr_multi_app on a routed Page", fs)
	}

	r = graph(t, f.p, http.MethodGet, "/v25.0/"+testPage+"?fields=nonsense", tok, nil)
	if code, _ := r.errCode(); code != 100 {
		t.Errorf("unknown field: %d %v, want code 100", r.status, r.body)
	}
	r = graph(t, f.p, http.MethodGet, "/v25.0/me", "wrong-token", nil)
	if code, _ := r.errCode(); code != 190 {
		t.Errorf("bad token: %d %v, want code 190", r.status, r.body)
	}

	zero := newFixture(t, "")
	r = graph(t, zero.p, http.MethodGet, "/v25.0/me?fields=messaging_feature_status", zero.p.Token(testPage, botID), nil)
	fs, _ = r.body["messaging_feature_status"].(map[string]any)
	if fs["msgr_multi_app"] != false {
		t.Errorf("zero-config messaging_feature_status = %v, want msgr_multi_app false", fs)
	}
}

func TestSubscribedAppsReadAndWrite(t *testing.T) {
	f := newFixture(t, botID)
	tok := f.p.Token(testPage, botID)

	fieldsOf := func(id string) []string {
		t.Helper()
		r := graph(t, f.p, http.MethodGet, "/v25.0/"+testPage+"/subscribed_apps", tok, nil)
		if r.status != 200 {
			t.Fatalf("GET subscribed_apps = %d %v", r.status, r.body)
		}
		data, _ := r.body["data"].([]any)
		for _, d := range data {
			m, _ := d.(map[string]any)
			if m["id"] != id {
				continue
			}
			var out []string
			list, _ := m["subscribed_fields"].([]any)
			for _, x := range list {
				s, _ := x.(string)
				out = append(out, s)
			}
			return out
		}
		return nil
	}

	if got := fieldsOf(botID); !slices.Equal(got, DefaultSubscribedFields) {
		t.Errorf("bot's fields = %v, want the defaults %v", got, DefaultSubscribedFields)
	}
	f.p.SetSubscribedFields(testPage, botID, "messages", "standby")
	if got := fieldsOf(botID); !slices.Equal(got, []string{"messages", "standby"}) {
		t.Errorf("after SetSubscribedFields: %v", got)
	}
	f.p.SetSubscribedFields(testPage, deskID)
	if got := fieldsOf(deskID); got != nil {
		t.Errorf("an app with no fields is listed with %v", got)
	}

	r := graph(t, f.p, http.MethodPost, "/v25.0/"+testPage+"/subscribed_apps?subscribed_fields=messages,standby,messaging_handovers", tok, nil)
	if r.status != 200 || r.body["success"] != true {
		t.Fatalf("POST subscribed_apps = %d %v", r.status, r.body)
	}
	if got := f.p.SubscribedFields(testPage, botID); !slices.Equal(got, []string{"messages", "standby", "messaging_handovers"}) {
		t.Errorf("after POST: %v", got)
	}
	r = graph(t, f.p, http.MethodPost, "/v25.0/"+testPage+"/subscribed_apps?subscribed_fields=Bad-Field", tok, nil)
	if code, _ := r.errCode(); code != 100 {
		t.Errorf("bad field name: %d %v, want code 100", r.status, r.body)
	}
	r = graph(t, f.p, http.MethodPost, "/v25.0/"+testPage+"/subscribed_apps", tok, nil)
	if code, _ := r.errCode(); code != 100 {
		t.Errorf("no fields: %d %v, want code 100", r.status, r.body)
	}
}

func TestSecondaryReceiversAnswerOnlyTheDefaultApp(t *testing.T) {
	f := newFixture(t, botID)

	r := graph(t, f.p, http.MethodGet, "/v25.0/me/secondary_receivers?fields=id,name", f.p.Token(testPage, botID), nil)
	if r.status != 200 {
		t.Fatalf("default app: %d %v", r.status, r.body)
	}
	var ids []string
	data, _ := r.body["data"].([]any)
	for _, d := range data {
		m, _ := d.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
		if id == inboxID && m["name"] != "Page Inbox" {
			t.Errorf("inbox entry = %v", m)
		}
	}
	if !slices.Equal(ids, []string{inboxID, deskID}) {
		t.Errorf("secondary receivers = %v, want the other apps", ids)
	}

	r = graph(t, f.p, http.MethodGet, "/v25.0/me/secondary_receivers?fields=id,name", f.p.Token(testPage, deskID), nil)
	if code, _ := r.errCode(); code != 10 {
		t.Errorf("not the default app: %d %v, want code 10", r.status, r.body)
	}
}

func TestTakeRefusesTheAppBeforeLookingAtTheRecipient(t *testing.T) {
	f := newFixture(t, botID)
	// Nobody has written: the recipient is unknown either way, but an app
	// without the permission hears about the permission.
	r := graph(t, f.p, http.MethodPost, "/v25.0/me/take_thread_control", f.p.Token(testPage, inboxID), map[string]any{"recipient": recipient("0")})
	if code, _ := r.errCode(); code != 10 {
		t.Errorf("no permission: %d %v, want code 10", r.status, r.body)
	}
	r = graph(t, f.p, http.MethodPost, "/v25.0/me/take_thread_control", f.p.Token(testPage, deskID), map[string]any{"recipient": recipient("0")})
	if code, sub := r.errCode(); code != 100 || sub != 2018001 {
		t.Errorf("permitted app, unknown user: %d %v, want 100/2018001", r.status, r.body)
	}
}
