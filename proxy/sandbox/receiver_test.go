package sandbox

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/signature"
)

// The receiver records each event's delivery id, matched to the POST's
// entries by position.
func TestReceiverRecordsDeliveryIDs(t *testing.T) {
	r := startReceiver(t, botSecret)
	s := signature.New([]byte(botSecret))
	entry := func(mid string) string {
		return `{"id":"1","time":1,"messaging":[{"sender":{"id":"u1"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"` + mid + `","text":"` + mid + `"}}]}`
	}
	post := func(ids string, entries ...string) {
		body := []byte(`{"object":"page","entry":[`)
		for i, e := range entries {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, e...)
		}
		body = append(body, "]}"...)
		req, err := http.NewRequestWithContext(testCtx(t), "POST", r.URL(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(signature.Header256, s.Sign256(body))
		req.Header.Set(signature.Header1, s.Sign1(body))
		if ids != "" {
			req.Header.Set(forward.DeliveryHeader, ids)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
	post("p/1/1,p/1/2,p/1/3", entry("a"), entry("b"), entry("c"))
	post("", entry("d"))

	// And what Baton's forwarder sends.
	f, err := forward.New(forward.Options{URL: r.URL(), Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.DeliverID(context.Background(), "p/2/9", []byte(`{"object":"page","entry":[`+entry("e")+`]}`)); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, ev := range r.Events() {
		got = append(got, ev.Text+"="+ev.DeliveryID)
	}
	want := []string{"a=p/1/1", "b=p/1/2", "c=p/1/3", "d=", "e=p/2/9"}
	if len(got) != len(want) {
		t.Fatalf("events %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("events %q; want %q", got, want)
			break
		}
	}
}
