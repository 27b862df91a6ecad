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
