package messenger

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// fixture reads a webhook body from testdata/webhooks.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/webhooks/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// sameJSON reports whether a and b hold the same JSON value, numbers
// compared as written.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if err := da.Decode(&va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := db.Decode(&vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// Page feed changes and Instagram comments come as entry[].changes[]:
// each is an event of its own, on the page's thread (no user), with its
// field, and its envelope to the bot is the body Meta sent.
func TestChangesAreEventsWithTheirEnvelope(t *testing.T) {
	for _, c := range []struct {
		file, object, page, field string
	}{
		{"feed-comment.json", "page", "104455667788990", "feed"},
		{"instagram-comment.json", "instagram", "17841400000000001", "comments"},
	} {
		body := fixture(t, c.file)
		evs, err := Parse(body)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if len(evs) != 1 {
			t.Fatalf("%s: %d events; want 1", c.file, len(evs))
		}
		e := evs[0]
		if e.Kind != KindChange || e.Channel != Changes || e.Field != c.field || e.Object != c.object || e.PageID != c.page || e.ThreadUser() != "" {
			t.Errorf("%s: %+v", c.file, e)
		}
		if !sameJSON(t, Envelope(&e), body) {
			t.Errorf("%s: the envelope to the bot\n%s\nis not what Meta sent\n%s", c.file, Envelope(&e), body)
		}
		back, err := DecodeRecord(EncodeRecord(&e))
		if err != nil || !bytes.Equal(Envelope(&back), Envelope(&e)) {
			t.Errorf("%s: stored and read back, the envelope is %s (%v)", c.file, Envelope(&back), err)
		}
	}
}

// An entry with messaging, standby and changes gives its events in that
// order, each on its channel.
func TestChangesFollowAnEntrysMessages(t *testing.T) {
	body := []byte(`{"object":"page","entry":[{"id":"1","time":2,"changes":[{"field":"feed","value":{"item":"status"}}],` +
		`"messaging":[{"sender":{"id":"9"},"recipient":{"id":"1"},"timestamp":3,"message":{"mid":"m1","text":"hi"}}]}]}`)
	evs, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Channel != Messaging || evs[1].Channel != Changes || evs[1].Field != "feed" {
		t.Fatalf("events %+v", evs)
	}
	if !bytes.Contains(Envelope(&evs[1]), []byte(`"changes":[{"field":"feed","value":{"item":"status"}}]`)) {
		t.Errorf("envelope %s", Envelope(&evs[1]))
	}
}

// The envelope keeps the entry's id and time as Meta wrote them: a
// numeric id stays a number, a string time a string, escapes as they
// were; an Instagram entry that puts time first is still read whole.
func TestEnvelopeKeepsTheEntryAsWritten(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"object":"page","entry":[{"id":104455667788990,"time":"1764760000","messaging":[{"sender":{"id":"9"},"message":{"mid":"m","text":"a<b"}}]}]}`,
			`{"object":"page","entry":[{"id":104455667788990,"time":"1764760000","messaging":[{"sender":{"id":"9"},"message":{"mid":"m","text":"a<b"}}]}]}`},
		{`{"object":"page","entry":[{"id":"10\u0034","messaging":[{"sender":{"id":"9"},"message":{"mid":"m"}}]}]}`,
			`{"object":"page","entry":[{"id":"10\u0034","messaging":[{"sender":{"id":"9"},"message":{"mid":"m"}}]}]}`},
	} {
		evs, err := Parse([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := Envelope(&evs[0]); string(got) != c.want {
			t.Errorf("envelope\n%s\nwant\n%s", got, c.want)
		}
		back, err := DecodeRecord(EncodeRecord(&evs[0]))
		if err != nil || string(Envelope(&back)) != c.want {
			t.Errorf("after the store: %s (%v)", Envelope(&back), err)
		}
	}
	body := fixture(t, "instagram-message.json")
	evs, err := Parse(body)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %+v", err, evs)
	}
	if evs[0].Object != "instagram" || evs[0].UserID != "6612345678901234" || !sameJSON(t, Envelope(&evs[0]), body) {
		t.Errorf("instagram message: %+v\n%s", evs[0], Envelope(&evs[0]))
	}
}

// Records stored by an older Baton (version 1, without the entry as
// written) still read, and keep their bytes when written again, so their
// delivery ids do not change across an upgrade.
func TestVersionOneRecordsStillRead(t *testing.T) {
	e := Event{Object: "page", PageID: "1", EntryTime: 5, Channel: Standby,
		Raw: []byte(`{"sender":{"id":"9"},"recipient":{"id":"1"},"timestamp":3,"message":{"mid":"m1","text":"hi"}}`)}
	v1 := EncodeRecord(&e)
	if v1[0] != recordV1 {
		t.Fatalf("an event without its entry as written was stored as version %d", v1[0])
	}
	back, err := DecodeRecord(v1)
	if err != nil || back.Entry.Exact || back.UserID != "9" || back.Channel != Standby {
		t.Fatalf("%+v %v", back, err)
	}
	if !bytes.Equal(EncodeRecord(&back), v1) {
		t.Error("written again, a version 1 record changed its bytes")
	}
	if got := string(Envelope(&back)); got != `{"object":"page","entry":[{"id":"1","time":5,"standby":[`+string(e.Raw)+`]}]}` {
		t.Errorf("envelope of a version 1 record: %s", got)
	}
}

// An event parsed in place keeps nothing of the body once detached with
// its record: the body's buffer can be reused.
func TestDetachedEventOutlivesItsBody(t *testing.T) {
	body := []byte(`{"object":"page","entry":[{"id":104455667788990,"time":"1764760000","messaging":[{"sender":{"id":"9"},"message":{"mid":"m","text":"hi"}}]}]}`)
	want := string(body)
	evs, err := ParseShared(body)
	if err != nil {
		t.Fatal(err)
	}
	rec, d := EncodeRecordDetached(&evs[0])
	for i := range body {
		body[i] = 'x'
	}
	if got := string(Envelope(&d)); got != want {
		t.Errorf("after the body was reused the envelope is\n%s\nwant\n%s", got, want)
	}
	back, err := DecodeRecord(rec)
	if err != nil || string(Envelope(&back)) != want {
		t.Errorf("the record reads back as %s (%v)", Envelope(&back), err)
	}
}
