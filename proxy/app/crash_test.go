package app_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// childEnv makes the test binary act as a Baton process (see TestMain), so
// the crash test can kill a real process with SIGKILL.
const childEnv = "BATON_TEST_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	a, err := app.New(app.Options{Config: cfg, Logger: zap.NewNop()})
	if err == nil {
		err = a.Start()
	}
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	os.Stdout.WriteString("LISTENING " + a.WebhookURL() + "\n")
	select {} // until killed
}

// startChild runs a Baton child process on the harness's config and data
// directory and returns its webhook URL.
func startChild(t *testing.T, h *harness) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+filepath.Join(h.dir, "baton.yaml"),
		"APP_SECRET="+botSecret, "PAGE_TOKEN="+h.p.Token(page, botApp))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "LISTENING ") {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "LISTENING "))
}

func TestKilledAfterAckStillDelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	h := newHarness(t, harnessOpts{})
	// The in-process Baton is only used for its config; the child owns the data dir.
	h.baton.Close()
	h.bot.SetFailing(503) // the child cannot deliver before it dies
	cmd, url := startChild(t, h)

	body := envelope(textEvent("8001", "m_crash", "survive the crash"))
	status, _, err := postTo(url, body, signed(body))
	if err != nil || status != 200 {
		t.Fatalf("webhook to child: %d %v", status, err)
	}
	// Acked: kill at once, no chance to flush anything else.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	h.bot.SetFailing(0)
	h.start() // same data directory
	h.waitText(h.bot, "8001", "survive the crash")
	if got := texts(h.bot, "8001"); len(got) != 1 {
		t.Errorf("bot received %q; want the event once", got)
	}
}

// Killed while the bot holds the event, before its answer: the restarted
// Baton delivers it again, with the same delivery id, so the bot can tell
// the copy.
func TestKilledMidDeliveryRedeliversWithTheSameID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	h := newHarness(t, harnessOpts{})
	h.baton.Close()
	cmd, url := startChild(t, h)
	killed, acked := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.bot.OnEvent(func(ev sandbox.Received) {
		once.Do(func() {
			// Events may reach the bot before their webhook is answered
			// (they are handed on before the sync): the kill waits for the
			// 200, so that the event is acknowledged, and goes before the
			// bot's answer does.
			<-acked
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			close(killed)
		})
	})
	body := envelope(textEvent("8002", "m_mid", "in flight"))
	status, _, err := postTo(url, body, signed(body))
	close(acked)
	if err != nil || status != 200 {
		t.Fatalf("webhook to child: %d %v", status, err)
	}
	<-killed
	h.start()
	h.until(func() bool { return len(texts(h.bot, "8002")) == 2 }, func() string {
		return fmt.Sprintf("bot received %q; want the event again after the restart", texts(h.bot, "8002"))
	})
	evs := h.bot.EventsFor("8002")
	if evs[0].DeliveryID == "" || evs[0].DeliveryID != evs[1].DeliveryID {
		t.Errorf("delivery ids %q and %q; want the same, non-empty", evs[0].DeliveryID, evs[1].DeliveryID)
	}
}
