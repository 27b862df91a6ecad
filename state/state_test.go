package state

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRecentKeepsTheLastMessagesWithoutSharing(t *testing.T) {
	var th Thread
	for i := 0; i < RecentMessages+3; i++ {
		th.AddRecent(fmt.Sprint(i))
	}
	th.AddRecent("") // attachments-only messages are not kept
	if len(th.Recent) != RecentMessages || th.Recent[0] != "3" || th.Recent[RecentMessages-1] != fmt.Sprint(RecentMessages+2) {
		t.Fatalf("recent = %q", th.Recent)
	}
	copyOf := th // as the cache would hold it
	th.AddRecent("new")
	if copyOf.Recent[RecentMessages-1] == "new" || slices.Contains(copyOf.Recent, "new") {
		t.Error("AddRecent changed a copy of the thread")
	}
}

func TestTags(t *testing.T) {
	var th Thread
	th.SetTag("vip", true)
	th.SetTag("vip", true)
	th.SetTag("payment", true)
	cached := th
	th.SetTag("vip", false)
	if !th.HasTag("payment") || th.HasTag("vip") || len(th.Tags) != 1 {
		t.Errorf("tags = %q", th.Tags)
	}
	if !cached.HasTag("vip") {
		t.Error("SetTag changed a copy of the thread")
	}
}

func TestOwnerString(t *testing.T) {
	for o, want := range map[Owner]string{{}: "unknown", {Kind: OwnerBot}: "bot", {Kind: OwnerIdle}: "idle", {Kind: OwnerApp}: "app:?", {Kind: OwnerApp, AppID: "7"}: "app:7"} {
		if got := o.String(); got != want {
			t.Errorf("%+v = %q; want %q", o, got, want)
		}
	}
}

// TestRecentIsBoundedInBytes: long messages are cut on a character
// boundary and the oldest go first, so a cached thread stays small.
func TestRecentIsBoundedInBytes(t *testing.T) {
	var th Thread
	long := strings.Repeat("é", RecentBytes) // 2 bytes a character
	th.AddRecent("first")
	for i := 0; i < 6; i++ {
		th.AddRecent(long)
	}
	total := 0
	for _, r := range th.Recent {
		total += len(r)
		if len(r) > RecentBytes/4 || !utf8.ValidString(r) {
			t.Fatalf("kept %d bytes, valid %v", len(r), utf8.ValidString(r))
		}
	}
	if total > RecentBytes || len(th.Recent) != RecentBytes/(RecentBytes/4) || th.Recent[0] == "first" {
		t.Errorf("kept %d messages, %d bytes: %q...", len(th.Recent), total, th.Recent[0][:4])
	}
	th.AddRecent("short")
	if got := th.Recent[len(th.Recent)-1]; got != "short" {
		t.Errorf("newest = %q", got)
	}
}

func TestJournalCloneAndEqual(t *testing.T) {
	j := &Journal{Seq: 7, Done: 1, Plan: []byte(`{"effects":[1,2]}`)}
	c := j.Clone()
	if !c.Equal(j) || c == j {
		t.Fatalf("clone %+v of %+v", c, j)
	}
	c.Plan[2] = 'X'
	if string(j.Plan) != `{"effects":[1,2]}` {
		t.Error("changing the clone's plan changed the original")
	}
	var none *Journal
	if none.Clone() != nil || !none.Equal(nil) || none.Equal(j) || j.Equal(nil) {
		t.Error("nil journals")
	}
	if (&Journal{Seq: 7, Done: 2, Plan: j.Plan}).Equal(j) {
		t.Error("a journal with another Done is equal")
	}
}
