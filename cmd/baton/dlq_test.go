package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

const dlqPage = "104455667788990"

var (
	acceptedAt = time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	setAsideAt = time.Date(2026, 2, 2, 8, 0, 0, 0, time.UTC)
)

// dlqData is a stopped Baton's config and data directory with dead
// letters: two of user 1111's texts and one of user 2222's.
type dlqData struct {
	t      *testing.T
	config string
	dir    string
	dead   []state.DeadLetter // as set aside, in list order
}

func newDLQData(t *testing.T) *dlqData {
	t.Helper()
	root := t.TempDir()
	d := &dlqData{t: t, config: filepath.Join(root, "baton.yaml"), dir: filepath.Join(root, "data")}
	if err := os.WriteFile(d.config, []byte(`data_dir: data
app: {id: "555000111222333", secret: "${BATON_TEST_UNSET_SECRET}", verify_token: "${BATON_TEST_UNSET_TOKEN}"}
pages: [{id: "`+dlqPage+`", token: "${BATON_TEST_UNSET_PAGE_TOKEN}"}]
bot: {url: "http://127.0.0.1:3000/webhook"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := d.open()
	defer s.Close()
	ctx := context.Background()
	var evs []state.NewEvent
	for i, m := range []struct{ user, text string }{{"2222", "where is my order"}, {"1111", "hello"}, {"1111", "anyone?"}} {
		raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":%d,"message":{"mid":"m%d","text":%q}}`,
			m.user, dlqPage, acceptedAt.UnixMilli(), i, m.text)
		ev, err := messenger.ParseEvent("page", dlqPage, acceptedAt.UnixMilli(), messenger.Messaging, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, state.NewEvent{Thread: state.ThreadKey{Page: dlqPage, User: m.user}, Record: messenger.EncodeRecord(&ev)})
	}
	if _, err := s.Enqueue(ctx, acceptedAt, evs); err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"2222", "1111", "1111"} {
		reason := "bot rejected the event with HTTP 400 after 5 attempts: {\"error\":\"bad\"}"
		if user == "1111" {
			reason = "retry budget 24h0m0s spent: the bot failed for 24h0m3s, 40 attempts in a row; last answer: post to bot: dial tcp 127.0.0.1:3000: connect: connection refused"
		}
		err := s.Complete(ctx, state.Completion{Thread: evs[i].Thread, Seq: uint64(i + 1), DeadLetter: reason, DeadAt: setAsideAt.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if d.dead, err = s.ListDeadLetters(ctx, nil); err != nil || len(d.dead) != 3 {
		t.Fatalf("set up %d dead letters, %v", len(d.dead), err)
	}
	return d
}

func (d *dlqData) open() *badgerstore.Store {
	d.t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: d.dir, MemTableSize: 8 << 20})
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

// run runs `baton dlq` with args, --config added (which means offline).
func (d *dlqData) run(args ...string) result {
	return runBaton(append(append([]string{"dlq"}, args...), "--config", d.config)...)
}

func id(dl state.DeadLetter) string { return dispatch.DeliveryID(dl.Seq, dl.Records[0]) }

func TestDLQListPrintsATable(t *testing.T) {
	d := newDLQData(t)
	got := d.run("list")
	want := fmt.Sprintf(`THREAD                SEQ  DELIVERY ID  ENQUEUED              SET ASIDE             EVENT    REASON
%[1]s/1111  2    %-11[2]s  2026-02-01T08:00:00Z  2026-02-02T08:00:01Z  message  retry budget 24h0m0s spent: the bot failed for 24h0m3s, 40 attempts in a row; last answer: post to …
%[1]s/1111  3    %-11[3]s  2026-02-01T08:00:00Z  2026-02-02T08:00:02Z  message  retry budget 24h0m0s spent: the bot failed for 24h0m3s, 40 attempts in a row; last answer: post to …
%[1]s/2222  1    %-11[4]s  2026-02-01T08:00:00Z  2026-02-02T08:00:00Z  message  bot rejected the event with HTTP 400 after 5 attempts: {"error":"bad"}
3 dead letters in 2 threads
`, dlqPage, id(d.dead[0]), id(d.dead[1]), id(d.dead[2]))
	if got.code != 0 || got.stdout != want {
		t.Errorf("got %v\nwant stdout:\n%s", got, want)
	}
	if one := d.run("list", "--thread", dlqPage+"/2222"); one.code != 0 || strings.Count(one.stdout, "\n") != 3 || !strings.Contains(one.stdout, "1 dead letter in 1 thread") {
		t.Errorf("one thread: %v", one)
	}
}

func TestDLQListJSON(t *testing.T) {
	d := newDLQData(t)
	got := d.run("list", "--json", "--thread", dlqPage+"/1111", "--seq", "3")
	if got.code != 0 {
		t.Fatalf("%v", got)
	}
	var list []struct {
		Thread, Page, User, Reason, Enqueued string
		SetAside                             string `json:"set_aside"`
		Seq                                  uint64
		Events                               []struct {
			DeliveryID    string `json:"delivery_id"`
			Channel, Kind string
			Event         json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(got.stdout), &list); err != nil {
		t.Fatalf("%v in %s", err, got.stdout)
	}
	if len(list) != 1 {
		t.Fatalf("listed %d; want the one asked for", len(list))
	}
	j := list[0]
	if j.Thread != dlqPage+"/1111" || j.User != "1111" || j.Seq != 3 || j.SetAside != "2026-02-02T08:00:02Z" || !strings.HasPrefix(j.Reason, "retry budget") {
		t.Errorf("listed %+v", j)
	}
	var event bytes.Buffer
	if len(j.Events) == 1 {
		json.Compact(&event, j.Events[0].Event)
	}
	if len(j.Events) != 1 || j.Events[0].DeliveryID != id(d.dead[1]) || j.Events[0].Kind != "message" || j.Events[0].Channel != "messaging" ||
		!strings.Contains(event.String(), `"text":"anyone?"`) {
		t.Errorf("events %+v", j.Events)
	}
	if none := d.run("list", "--json", "--thread", dlqPage+"/9999"); none.code != 0 || strings.TrimSpace(none.stdout) != "[]" {
		t.Errorf("a thread without dead letters: %v", none)
	}
}

// replay puts items back in their thread's queue, decided, under their own
// numbers; discard deletes; both print what they did and leave history.
func TestDLQReplayAndDiscard(t *testing.T) {
	d := newDLQData(t)
	u1, u2 := dlqPage+"/1111", dlqPage+"/2222"

	got := d.run("replay", "--thread", u1, "--seq", "3")
	want := fmt.Sprintf("replayed %s #3 (%s)\nreplayed 1 dead letter in 1 thread; Baton delivers them to the bot when it starts\n", u1, id(d.dead[1]))
	if got.code != 0 || got.stdout != want {
		t.Errorf("replay one: %v\nwant:\n%s", got, want)
	}
	if got := d.run("replay", "--thread", u1, "--seq", "3"); got.code != 1 || !strings.Contains(got.stderr, "has no dead letter #3") {
		t.Errorf("replaying it again: %v", got)
	}
	got = d.run("discard", "--all")
	if got.code != 0 || !strings.Contains(got.stdout, "discarded "+u1+" #2") || !strings.Contains(got.stdout, "discarded "+u2+" #1") ||
		!strings.Contains(got.stdout, "discarded 2 dead letters in 2 threads\n") {
		t.Errorf("discard all: %v", got)
	}
	if got := d.run("list"); got.code != 0 || got.stdout != "no dead letters\n" {
		t.Errorf("list after: %v", got)
	}
	if got := d.run("replay", "--all"); got.code != 0 || got.stdout != "no dead letters\n" {
		t.Errorf("replay all of none: %v", got)
	}

	s := d.open()
	defer s.Close()
	ctx := context.Background()
	k1 := state.ThreadKey{Page: dlqPage, User: "1111"}
	head, err := s.Head(ctx, k1, 0, 10)
	if err != nil || len(head) != 1 || head[0].Seq != 3 || !head[0].Decided || !bytes.Equal(head[0].Outbox[0], d.dead[1].Records[0]) {
		t.Fatalf("queue of %s: %+v, %v", u1, head, err)
	}
	if p, _ := s.PendingThreads(ctx); len(p) != 1 || p[0] != k1 {
		t.Errorf("pending threads %v; Baton would not resume the replayed one", p)
	}
	hist, _ := s.History(ctx, k1)
	var kinds []string
	for _, c := range hist {
		kinds = append(kinds, c.Kind+"#"+c.Reason.EventID+"@"+c.At.UTC().Format(time.RFC3339))
	}
	if w := []string{"dead_letter_replayed#3@2026-03-01T09:00:00Z", "dead_letter_discarded#2@2026-03-01T09:00:00Z"}; strings.Join(kinds, " ") != strings.Join(w, " ") {
		t.Errorf("history %v; want %v", kinds, w)
	}
}

// Misuse gets exit code 2 and says what is wrong; a thread without dead
// letters, 1; nothing is changed by either.
func TestDLQRefusesBadArguments(t *testing.T) {
	d := newDLQData(t)
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"replay"}, 2, "say which dead letters"},
		{[]string{"discard", "--all", "--thread", dlqPage + "/1111"}, 2, "exclude each other"},
		{[]string{"replay", "--seq", "2"}, 2, "--seq needs --thread"},
		{[]string{"replay", "--thread", "1111"}, 2, "want PAGE/USER"},
		{[]string{"list", "--thread", "/1111"}, 2, "want PAGE/USER"},
		{[]string{"list", "extra"}, 2, "unexpected argument"},
		{[]string{"list", "--all"}, 2, "unknown flag: --all"},
		{[]string{"purge"}, 2, "unknown subcommand"},
		{[]string{"discard", "--thread", dlqPage + "/9999"}, 1, "has no dead letters"},
		{[]string{"replay", "--thread", dlqPage + "/1111", "--seq", "1"}, 1, "has no dead letter #1"},
	} {
		got := d.run(tt.args...)
		if got.code != tt.code || !strings.Contains(got.stderr, tt.msg) {
			t.Errorf("dlq %q: %v\nwant exit %d saying %q", tt.args, got, tt.code, tt.msg)
		}
	}
	if got := d.run("list"); !strings.Contains(got.stdout, "3 dead letters") {
		t.Errorf("dead letters changed by refused commands: %v", got)
	}
}

func TestDLQHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"list", "--help"}, {"replay", "-h"}, {"discard", "--help"}} {
		got := runBaton(append([]string{"dlq"}, args...)...)
		if got.code != 0 || !strings.Contains(got.stdout, "--thread PAGE/USER") {
			t.Errorf("dlq %q: %v", args, got)
		}
		if len(args) == 2 && (!strings.Contains(got.stdout, "-config") || !strings.Contains(got.stdout, "-seq")) {
			t.Errorf("dlq %q does not list its flags: %v", args, got)
		}
	}
	if got := runBaton("dlq"); got.code != 2 || !strings.Contains(got.stderr, "Usage:") {
		t.Errorf("dlq alone: %v", got)
	}
}

// While Baton holds the data directory, dlq says Baton must be stopped;
// a config whose data_dir holds no data is refused, not initialised.
func TestDLQNeedsAStoppedBaton(t *testing.T) {
	d := newDLQData(t)
	s := d.open() // Baton, running
	got := d.run("list")
	s.Close()
	if got.code != 1 || !strings.Contains(got.stderr, "Baton must be stopped first") {
		t.Errorf("with Baton running: %v", got)
	}
	if got := d.run("list"); got.code != 0 {
		t.Errorf("after Baton stopped: %v", got)
	}

	empty := filepath.Join(t.TempDir(), "baton.yaml")
	cfg, _ := os.ReadFile(d.config)
	if err := os.WriteFile(empty, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	got = runBaton("dlq", "list", "--config", empty)
	if got.code != 1 || !strings.Contains(got.stderr, "no Baton data in") {
		t.Errorf("without data: %v", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(empty), "data")); !os.IsNotExist(err) {
		t.Errorf("dlq created a data directory: %v", err)
	}
}
