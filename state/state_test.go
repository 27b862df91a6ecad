package state

import (
	"fmt"
	"slices"
	"testing"
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
