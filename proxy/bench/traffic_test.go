package bench

import (
	"testing"

	"github.com/batonproxy/baton/proxy/messenger"
)

// A batched body reads as the single bodies would, one event per user in
// order, each with its user's sequence number in the timestamp.
func TestBodyHoldsEachUsersEvent(t *testing.T) {
	tr := newTraffic()
	users, seqs := []int{0, 7, 42}, []uint32{1, 3, 10} // a text, a postback, a read receipt
	evs, err := messenger.Parse(tr.Body(nil, users, seqs))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(users) {
		t.Fatalf("%d events; want %d", len(evs), len(users))
	}
	for i, e := range evs {
		single, err := messenger.Parse(tr.Body(nil, users[i:i+1], seqs[i:i+1]))
		if err != nil || len(single) != 1 {
			t.Fatalf("single body of user %d: %v, %v", users[i], single, err)
		}
		if e.UserID != UserID(users[i]) || e.Timestamp != tr.Base+int64(seqs[i]) || e.Kind != single[0].Kind || string(e.Raw) != string(single[0].Raw) {
			t.Fatalf("event %d = %+v; want %+v", i, e, single[0])
		}
	}
}

// The fake bot records every event of a batched body, as a bot reading
// Meta's batches must, and refuses a body with an event that is not the
// benchmark's without recording any of it.
func TestBotRecordsEveryEventOfABatch(t *testing.T) {
	tr := newTraffic()
	b := NewBot(tr.Base)
	users, seqs := []int{3, 1, 8}, []uint32{2, 5, 1}
	b.mu.Lock()
	n, ok := b.identify(tr.Body(nil, users, seqs), 1)
	b.mu.Unlock()
	if !ok || n != 3 {
		t.Fatalf("identify = %d, %v; want 3 events", n, ok)
	}
	for i, r := range b.got {
		if int(r.User) != users[i] || r.Seq != seqs[i] {
			t.Errorf("record %d = %+v; want user %d seq %d", i, r, users[i], seqs[i])
		}
	}
	head, good, _ := messenger.SplitEnvelope(tr.Body(nil, users[:1], seqs[:1]))
	mixed := string(head) + string(good) + `,{"id":"1","time":1,"messaging":[{"sender":{"id":"someone"},"timestamp":5}]}]}`
	b.mu.Lock()
	n, ok = b.identify([]byte(mixed), 2)
	b.mu.Unlock()
	if ok || n != 0 || len(b.got) != 3 {
		t.Errorf("body with a foreign event: identify = %d, %v, %d records; want refused, nothing recorded", n, ok, len(b.got))
	}
}
