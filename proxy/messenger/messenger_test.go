package messenger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

const batch = `{"object":"page","entry":[
 {"id":"104455667788990","time":1767225600123,"messaging":[
  {"sender":{"id":"77"},"recipient":{"id":"104455667788990"},"timestamp":1767225599876,"message":{"mid":"m_1","text":"hi","x_unknown":{"kept":true}}},
  {"sender":{"id":"77"},"recipient":{"id":"104455667788990"},"timestamp":"1767225701000","message":{"mid":"m_2","text":"Talk to a person","quick_reply":{"payload":"HANDOFF"}}}
 ],"standby":[
  {"sender":{"id":"88"},"recipient":{"id":"104455667788990"},"postback":{"mid":"m_3","title":"Help","referral":{"ref":"support","source":"SHORTLINK","type":"OPEN_THREAD"}}}
 ]},
 {"id":104455667788990,"time":1767225600200,"messaging":[
  {"sender":{"id":"104455667788990"},"recipient":{"id":"77"},"message":{"is_echo":true,"app_id":263902037430900,"mid":"m_4","text":"Sam here","metadata":"baton:welcome"}},
  {"sender":{"id":"77"},"recipient":{"id":"104455667788990"},"pass_thread_control":{"new_owner_app_id":"555","previous_owner_app_id":263902037430900,"metadata":"done"}},
  {"recipient":{"id":"104455667788990"},"timestamp":1,"app_roles":{"555":["primary_receiver"]}},
  {"recipient":{"id":"104455667788990"},"timestamp":2,"optin":{"ref":"checkout","user_ref":"ur_8f"}},
  {"sender":{"id":"77"},"recipient":{"id":"104455667788990"},"request_thread_control":{"requested_owner_app_id":263902037430900,"metadata":"admin"}}
 ]}]}`

func TestParseSplitsAndReadsRoutingFields(t *testing.T) {
	evs, err := Parse([]byte(batch))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ch              Channel
		kind            Kind
		user, mid, text string
		payload, app    string
	}
	want := []row{
		{Messaging, KindText, "77", "m_1", "hi", "", ""},
		{Messaging, KindQuickReply, "77", "m_2", "Talk to a person", "HANDOFF", ""},
		{Standby, KindPostback, "88", "m_3", "Help", "", ""},
		{Messaging, KindEcho, "77", "m_4", "Sam here", "", "263902037430900"},
		{Messaging, KindPassThreadControl, "77", "", "", "", "555"},
		{Messaging, KindAppRoles, "", "", "", "", ""},
		{Messaging, KindOptin, "", "", "", "", ""},
		{Messaging, KindRequestThreadControl, "77", "", "", "", "263902037430900"},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events; want %d", len(evs), len(want))
	}
	for i, w := range want {
		e := evs[i]
		got := row{e.Channel, e.Kind, e.UserID, e.MID, e.Text, e.Payload, e.AppID}
		if got != w {
			t.Errorf("event %d = %+v; want %+v", i, got, w)
		}
		if e.PageID != "104455667788990" {
			t.Errorf("event %d page = %q", i, e.PageID)
		}
	}
	if evs[1].Timestamp != 1767225701000 {
		t.Errorf("string timestamp read as %d", evs[1].Timestamp)
	}
	if evs[6].ThreadUser() != "ref:ur_8f" || evs[5].ThreadUser() != "" {
		t.Errorf("thread users: optin %q, app_roles %q", evs[6].ThreadUser(), evs[5].ThreadUser())
	}
	if !IsBatonMetadata(evs[3].Metadata) || evs[3].Metadata != BatonMetadata("welcome") {
		t.Errorf("echo metadata = %q; want Baton's mark", evs[3].Metadata)
	}
	if evs[4].PrevAppID != "263902037430900" || evs[4].Metadata != "done" {
		t.Errorf("pass fields: %+v", evs[4])
	}
	if evs[2].Ref != "support" || evs[2].Source != "SHORTLINK" || evs[6].Ref != "checkout" {
		t.Errorf("referral/optin refs: postback %+v, optin %+v", evs[2], evs[6])
	}
	// Raw bytes are exactly the input, unknown fields and all.
	if !bytes.Contains([]byte(batch), evs[0].Raw) || !bytes.Contains(evs[0].Raw, []byte(`"x_unknown":{"kept":true}`)) {
		t.Errorf("raw event not kept verbatim: %s", evs[0].Raw)
	}
}

func TestReferralsAndAttachments(t *testing.T) {
	body := `{"object":"page","entry":[{"id":"1","messaging":[
 {"sender":{"id":"2"},"referral":{"ref":"vip","source":"ADS","type":"OPEN_THREAD","ad_id":6045246247433}},
 {"sender":{"id":"2"},"message":{"mid":"m","attachments":[{"type":"image","payload":{}},{"type":"sticker"}]}}]}]}`
	evs, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if r := evs[0]; r.Kind != KindReferral || r.Ref != "vip" || r.Source != "ADS" || r.AdID != "6045246247433" {
		t.Errorf("referral = %+v", r)
	}
	if m := evs[1]; m.Kind != KindText || len(m.Attachments) != 2 || m.Attachments[0] != "image" || m.Attachments[1] != "sticker" {
		t.Errorf("attachments = %+v", m)
	}
}

func TestRecordAndEnvelopeRoundTrip(t *testing.T) {
	evs, err := Parse([]byte(batch))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		back, err := DecodeRecord(EncodeRecord(&e))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Raw, e.Raw) || back.PageID != e.PageID || back.Channel != e.Channel || back.Kind != e.Kind || back.EntryTime != e.EntryTime {
			t.Errorf("round trip changed %+v into %+v", e, back)
		}
		env := Envelope(&e)
		again, err := Parse(env)
		if err != nil || len(again) != 1 || !bytes.Equal(again[0].Raw, e.Raw) || again[0].Channel != e.Channel {
			t.Errorf("envelope %s does not parse back to the event: %v", env, err)
		}
	}
	if _, err := DecodeRecord([]byte{9, 9}); err == nil {
		t.Error("corrupt record decoded")
	}
	checkJoinedEnvelopes(t, evs)
	for _, body := range []string{``, `{}`, `{"object":"page"}`, `{"object":"pa\"ge","entry":[{}]}`, `{"object":"page","entry":[{}]`, `{"object":"page","entry":[]}`} {
		if _, _, ok := SplitEnvelope([]byte(body)); ok {
			t.Errorf("SplitEnvelope(%s) accepted", body)
		}
	}
}

// checkJoinedEnvelopes joins the envelopes of events of one object, as
// the forwarder batches them, and checks that the batch reads back as the
// same events in the same order.
func checkJoinedEnvelopes(t *testing.T, evs []Event) {
	t.Helper()
	var joined []byte
	var n int
	for i := range evs {
		head, entry, ok := SplitEnvelope(Envelope(&evs[i]))
		if !ok {
			t.Fatalf("SplitEnvelope refused the envelope of %+v", evs[i])
		}
		if evs[i].Object != evs[0].Object {
			continue
		}
		if joined == nil {
			joined = append(joined, head...)
		} else {
			joined = append(joined, ',')
		}
		joined = append(joined, entry...)
		n++
	}
	if joined == nil {
		return
	}
	joined = append(joined, "]}"...)
	again, err := Parse(joined)
	if err != nil || len(again) != n {
		t.Fatalf("joined envelopes %s read as %d events (%v); want %d", joined, len(again), err, n)
	}
	i := 0
	for _, e := range evs {
		if e.Object != evs[0].Object {
			continue
		}
		if !bytes.Equal(again[i].Raw, e.Raw) || again[i].PageID != e.PageID || again[i].Channel != e.Channel || again[i].EntryTime != e.EntryTime {
			t.Fatalf("joined event %d reads as %+v; want %+v", i, again[i], e)
		}
		i++
	}
}

func TestDedupKeys(t *testing.T) {
	evs, _ := Parse([]byte(batch))
	seen := map[string]bool{}
	for _, e := range evs {
		k := string(e.DedupKey())
		if seen[k] {
			t.Errorf("two different events share a dedup key: %s", e.Raw)
		}
		seen[k] = true
	}
	again, _ := Parse([]byte(batch))
	for i := range evs {
		if !bytes.Equal(evs[i].DedupKey(), again[i].DedupKey()) {
			t.Errorf("event %d: re-delivery has another key", i)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for body, want := range map[string]error{
		`{"object":"user","entry":[]}`:                 ErrUnknownObject,
		`{"object":"page","entry":[{"messaging":[]}]}`: ErrMalformed,
		`not json`: ErrMalformed,
		`{"object":"page","entry":[{"id":"1","messaging":[1]}]}`: ErrMalformed,
	} {
		if _, err := Parse([]byte(body)); !errors.Is(err, want) {
			t.Errorf("Parse(%s) = %v; want %v", body, err, want)
		}
	}
	if evs, err := Parse([]byte(`{"object":"instagram","entry":[]}`)); err != nil || len(evs) != 0 {
		t.Errorf("empty instagram delivery: %v %v", evs, err)
	}
}

func hostileCorpus(t testing.TB) []string {
	f, err := os.Open("../../testdata/webhooks/hostile.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

func TestHostileCorpusIsHandled(t *testing.T) {
	for _, body := range hostileCorpus(t) {
		evs, err := Parse([]byte(body))
		if err == nil {
			for _, e := range evs {
				e.DedupKey()
				e.ThreadUser()
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(batch))
	for _, body := range hostileCorpus(f) {
		f.Add([]byte(body))
	}
	for _, name := range []string{"feed-comment.json", "instagram-message.json", "instagram-comment.json"} {
		f.Add(fixture(f, name))
	}
	for _, body := range hostileBodies(300) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownObject) {
				t.Fatalf("unclassified error: %v", err)
			}
			// Errors name the problem; they never carry the body.
			if len(err.Error()) > 200 {
				t.Fatalf("error of %d bytes: %.300s", len(err.Error()), err)
			}
			return
		}
		for _, e := range evs {
			if !json.Valid(e.Raw) {
				t.Fatalf("accepted event is not JSON: %q", e.Raw)
			}
			back, err := DecodeRecord(EncodeRecord(&e))
			if err != nil || !bytes.Equal(back.Raw, e.Raw) || back.Entry.Exact != e.Entry.Exact ||
				!bytes.Equal(back.Entry.ID, e.Entry.ID) || !bytes.Equal(back.Entry.Time, e.Entry.Time) {
				t.Fatalf("record round trip failed: %v", err)
			}
			// Raw is the event's own span: read on its own, it gives the
			// same routing fields as it did inside the body (the entry's
			// id and time as written come from the body around it).
			again, err := ParseEvent(e.Object, e.PageID, e.EntryTime, e.Channel, e.Raw)
			again.Entry = e.Entry
			if err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("raw event reads differently on its own: %v\n%+v\n%+v", err, again, e)
			}
			if _, err := Parse(Envelope(&e)); err != nil {
				t.Fatalf("envelope of an accepted event does not parse: %v\n%s", err, Envelope(&e))
			}
		}
		checkJoinedEnvelopes(t, evs)
		shared, err := ParseShared(body)
		if err != nil || !reflect.DeepEqual(shared, evs) {
			t.Fatalf("ParseShared differs from Parse: %v\n%+v\n%+v", err, shared, evs)
		}
	})
}

// TestRawIsExactlyAsSent: Raw keeps the bytes of each event as they
// appear in the body, whitespace and escapes included, and bodies with
// escaped keys still split correctly.
func TestRawIsExactlyAsSent(t *testing.T) {
	ev1 := `{ "sender" : {"id":"7"}, "recipient":{"id":"1"},
	  "message": {"mid":"m.1", "text":"caf\u00e9 \"quoted\" ]}"} }`
	ev2 := `{"sender":{"id":"8"},"recipient":{"id":"1"},"read":{"watermark":5}}`
	body := "{\"object\": \"page\", \"entry\": [ {\"id\":\"1\",\"time\":3,\n \"messaging\": [ " + ev1 + " ,\n" + ev2 + "], \"standby\":[]}]}"
	evs, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || string(evs[0].Raw) != ev1 || string(evs[1].Raw) != ev2 {
		t.Fatalf("raw events changed: %d events", len(evs))
	}
	if evs[0].Text != `café "quoted" ]}` || evs[1].Kind != KindRead {
		t.Errorf("fields: %q %v", evs[0].Text, evs[1].Kind)
	}
	escaped := `{"object":"page","\u0065ntry":[{"id":"1","messaging":[` + ev2 + `]}]}`
	evs, err = Parse([]byte(escaped))
	if err != nil || len(evs) != 1 || evs[0].UserID != "8" || !json.Valid(evs[0].Raw) {
		t.Fatalf("escaped key: %v %+v", err, evs)
	}
}

func TestTimerEventRoundTrip(t *testing.T) {
	due := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev := TimerEvent("104", "ref:x\"y", "agent_idle", due, []byte(`{"armed":1}`))
	back, err := DecodeRecord(EncodeRecord(&ev))
	if err != nil {
		t.Fatal(err)
	}
	if back.Kind != KindTimer || back.Text != "agent_idle" || back.UserID != "ref:x\"y" || back.PageID != "104" ||
		back.Timestamp != due.UnixMilli() || back.Metadata != `{"armed":1}` {
		t.Errorf("timer event = %+v", back)
	}
	if bad := TimerEvent("1", "2", "k", due, []byte("{")); bad.Kind != KindTimer || bad.Metadata != "null" {
		t.Errorf("invalid data not replaced: %+v", bad)
	}
}

func TestFeedbackAnswer(t *testing.T) {
	evs, err := Parse([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"messaging_feedback":{"feedback_screens":[{"screen_id":0,"questions":{"nps_q":{"type":"nps","payload":"9"}}}]}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if f := evs[0].Feedback; evs[0].Kind != KindFeedback || f == nil || f.Question != "nps_q" || f.Type != "nps" || f.Score != "9" || f.Text != "" {
		t.Errorf("feedback = %+v %+v", evs[0], f)
	}
}

// ParseShared reads the same events as Parse, but their Raw bytes are
// the body's own; Parse's are copies that outlive changes to the body.
func TestParseSharedKeepsTheBodysBytes(t *testing.T) {
	body := []byte(batch)
	copied, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := ParseShared(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared, copied) {
		t.Fatalf("ParseShared read %+v; Parse %+v", shared, copied)
	}
	before := string(copied[0].Raw)
	clear(body)
	if string(copied[0].Raw) != before {
		t.Error("Parse's Raw changed with the body")
	}
	if string(shared[0].Raw) == before {
		t.Error("ParseShared's Raw did not change with the body: it is a copy")
	}
}
