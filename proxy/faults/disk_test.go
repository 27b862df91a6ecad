package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/state/badgerstore"
)

// The full-disk proof: Baton in-process under load while its data
// directory's file system fills, then frees up. What must hold: webhooks
// are answered 503 while free space is below limits.min_free_disk_bytes
// (nothing acknowledged meanwhile), Baton does not crash (no SIGBUS, its
// store does not fail), it takes webhooks again by itself once space
// returns, and every acknowledged event reaches the bot.
//
// Two versions: TestFullDiskInjected reads free space through an
// injected function that a filler lowers (it runs everywhere, in the
// ordinary test command); TestFullDiskTmpfs (-tags faults, as root) puts
// the data directory on a small tmpfs and fills it with a real file.

const (
	diskPage      = "104455667788990"
	diskBotApp    = "555000111222333"
	diskBotSecret = "disk-bot-secret"
	diskVerify    = "disk-verify"
	// diskWatermark is limits.min_free_disk_bytes: the default.
	diskWatermark = config.DefaultMinFreeDiskBytes
)

// diskRig is the sandbox platform, the fake bot and Baton in-process.
type diskRig struct {
	t    *testing.T
	p    *sandbox.Platform
	bot  *sandbox.Receiver
	a    *app.App
	opts app.Options // to start it again
}

// diskStart starts Baton on dataDir; free, when set, replaces its reading
// of the free space.
func diskStart(t *testing.T, dataDir string, free badgerstore.FreeSpaceFunc) *diskRig {
	t.Helper()
	r := &diskRig{t: t}
	var err error
	r.p, err = sandbox.Start(sandbox.Options{
		Pages: []string{diskPage}, DefaultApp: diskBotApp,
		Apps: []sandbox.AppSpec{{ID: diskBotApp, Secret: diskBotSecret, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.p.Close() })
	if r.bot, err = sandbox.StartReceiver(diskBotSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.bot.Close() })
	dir := t.TempDir()
	var b strings.Builder
	// A fixed webhook port: the load reaches a restarted Baton at the same
	// address, as Meta would.
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: %s\n", freePort(t), dataDir)
	fmt.Fprintf(&b, "app:\n  id: %q\n  secret: ${APP_SECRET}\n  verify_token: %s\n", diskBotApp, diskVerify)
	fmt.Fprintf(&b, "graph:\n  base_url: %s\n  version: %s\n", r.p.URL(), r.p.Version())
	fmt.Fprintf(&b, "pages:\n  - id: %q\n    token: ${PAGE_TOKEN}\n", diskPage)
	fmt.Fprintf(&b, "bot:\n  url: %s\n  retry_min: 10ms\n  retry_max: 1s\n", r.bot.URL())
	fmt.Fprintf(&b, "limits:\n  min_free_disk_bytes: %d\n", diskWatermark)
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"APP_SECRET": diskBotSecret, "PAGE_TOKEN": r.p.Token(diskPage, diskBotApp)}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r.opts = app.Options{Config: cfg, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), FreeSpace: free}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.a.Close() })
	return r
}

// start starts Baton on the rig's data directory and points the
// platform's webhooks at it.
func (r *diskRig) start() error {
	a, err := app.New(r.opts)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		a.Close()
		return err
	}
	r.a = a
	r.p.SetWebhook(diskBotApp, r.a.WebhookURL())
	return nil
}

// refused reads Baton's count of webhooks refused for want of free disk.
func (r *diskRig) refused() int {
	r.t.Helper()
	url := r.a.AdminURL() + "/metrics"
	status, body, err := fasthttp.GetTimeout(nil, url, 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		r.t.Fatalf("GET /metrics: %d %v", status, err)
	}
	want := `baton_store_refused_total{limit="` + badgerstore.LimitFreeDisk + `"} `
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// storeFailed reports whether Baton's store failed (fail-stop).
func (r *diskRig) storeFailed() error {
	if s, ok := r.a.Store().(interface{ Err() error }); ok {
		return s.Err()
	}
	return errors.New("the store does not report its health")
}

// diskWait polls cond every 10ms until it holds or within passes.
func diskWait(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// diskProve runs the load through a fill and a release of the disk: fill
// makes the file system (or its reading) fall below the watermark, and
// release gives the space back.
func diskProve(t *testing.T, r *diskRig, mode string, users int, rate float64, fill, release func()) {
	us := make([]string, users)
	for i := range us {
		us[i] = fmt.Sprintf("disk-user-%03d", i)
	}
	load, err := r.p.StartLoad(sandbox.LoadOptions{
		App: diskBotApp, URL: r.a.WebhookURL(), Page: diskPage, Users: us, Rate: rate, RetryDelay: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Close()
	diskWait(t, 10*time.Second, "first acknowledgements", func() bool { return load.Stats().Acked >= users })

	fill()
	diskWait(t, 30*time.Second, "503s once the disk is below the watermark", func() bool { return r.refused() > 0 })
	// While full, the lanes keep retrying and nothing is acknowledged.
	ackedFull, refusedFull := load.Stats().Acked, r.refused()
	diskWait(t, 30*time.Second, "more 503s", func() bool { return r.refused() >= refusedFull+2*users })
	if got := load.Stats().Acked; got != ackedFull {
		t.Errorf("%d events acknowledged below the watermark", got-ackedFull)
	}
	if err := r.storeFailed(); err != nil {
		t.Fatalf("the store failed on a full disk: %v", err)
	}

	release()
	diskWait(t, 30*time.Second, "acknowledgements once space returned", func() bool { return load.Stats().Acked > ackedFull+users })
	load.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := load.Wait(ctx); err != nil {
		t.Fatalf("events never acknowledged after space returned: %v", err)
	}

	events := load.Events()
	acked := map[string]bool{}
	for _, ev := range events {
		if !ev.Acked.IsZero() {
			acked[ev.MID] = true
		}
	}
	delivered := func() int {
		got := map[string]bool{}
		for _, rec := range r.bot.Events() {
			if acked[rec.MID] {
				got[rec.MID] = true
			}
		}
		return len(got)
	}
	deadline := time.Now().Add(60 * time.Second)
	for delivered() < len(acked) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := load.Stats()
	n := delivered()
	failed := r.storeFailed()
	t.Logf("full-disk: mode=%s sent=%d acked=%d refused503=%d failed_posts=%d delivered=%d lost=%d crashed=%v",
		mode, len(events), len(acked), r.refused(), st.Failed, n, len(acked)-n, failed != nil)
	if n != len(acked) || len(acked) != len(events) {
		t.Errorf("acked %d of %d events, delivered %d; want all acknowledged and delivered", len(acked), len(events), n)
	}
	if failed != nil {
		t.Errorf("the store failed: %v", failed)
	}
}

// TestFullDiskInjected fills a disk that Baton reads through an injected
// free-space function: a filler takes 64 MiB a tick until the free space
// is below the watermark, then gives it all back.
func TestFullDiskInjected(t *testing.T) {
	var free atomic.Int64
	free.Store(4 << 30)
	r := diskStart(t, filepath.Join(t.TempDir(), "data"), func(string) (uint64, error) {
		return uint64(max(free.Load(), 0)), nil
	})
	stop := make(chan struct{})
	defer close(stop)
	fill := func() {
		go func() {
			for free.Load() > diskWatermark/2 {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				free.Add(-64 << 20)
			}
		}()
	}
	diskProve(t, r, "injected", 20, 300, fill, func() { free.Store(4 << 30) })
}

// TestFullDiskTmpfs puts the data directory on a 512 MiB tmpfs and fills
// it with a file, under load, to half the watermark, then deletes the
// file. It needs -tags faults and root (to mount).
func TestFullDiskTmpfs(t *testing.T) {
	mnt := diskTmpfs(t)
	r := diskStart(t, filepath.Join(mnt, "data"), nil)
	filler := filepath.Join(mnt, "filler")
	stop := make(chan struct{})
	defer close(stop)
	filled := make(chan error, 1)
	fill := func() {
		go func() { filled <- diskFill(filler, diskWatermark/2, stop) }()
	}
	release := func() {
		if err := <-filled; err != nil {
			t.Errorf("filler: %v", err)
		}
		if err := os.Remove(filler); err != nil {
			t.Errorf("remove the filler: %v", err)
		}
	}
	diskProve(t, r, "tmpfs", 50, 400, fill, release)
}

// diskTmpfs mounts a 512 MiB tmpfs for a test (-tags faults, as root).
func diskTmpfs(t *testing.T) string {
	t.Helper()
	if !sizes.long {
		t.Skip("the real file system version runs with -tags faults")
	}
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=512m"); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root and CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// TestFullDiskTmpfsToTheLastBlock fills the tmpfs, under load, below the
// watermark, and then up to its last block: the filler writes until the
// file system refuses it. Baton gives up its disk reserve and goes on
// answering 503 without a crash; restarted on that full disk, it starts
// on the reserve's blocks (before the reserve, such a start was refused
// until someone freed space); once the filler's file is gone, it takes
// webhooks again and every acknowledged event reaches the bot.
func TestFullDiskTmpfsToTheLastBlock(t *testing.T) {
	mnt := diskTmpfs(t)
	data := filepath.Join(mnt, "data")
	r := diskStart(t, data, nil)
	reserve := filepath.Join(data, badgerstore.ReserveName)
	if _, err := os.Stat(reserve); err != nil {
		t.Fatalf("no disk reserve at start: %v", err)
	}
	filler := filepath.Join(mnt, "filler")
	stop := make(chan struct{})
	defer close(stop)
	filled := make(chan error, 1)
	fill := func() {
		go func() {
			if err := diskFill(filler, diskWatermark/2, stop); err != nil {
				filled <- err
				return
			}
			pause(2 * time.Second) // 503s below the watermark, the reserve still held
			filled <- diskFill(filler, -1, stop)
		}()
	}
	var restartedIn time.Duration
	release := func() {
		if err := <-filled; err != nil {
			t.Fatalf("filler: %v", err)
		}
		diskWait(t, 10*time.Second, "the reserve given up on the full disk", func() bool {
			_, err := os.Stat(reserve)
			return errors.Is(err, os.ErrNotExist)
		})
		if err := r.storeFailed(); err != nil {
			t.Fatalf("the store failed on the full disk: %v", err)
		}
		r.a.Close()
		began := time.Now()
		if err := r.start(); err != nil {
			t.Fatalf("restart on the full disk: %v", err)
		}
		restartedIn = time.Since(began)
		if err := os.Remove(filler); err != nil {
			t.Errorf("remove the filler: %v", err)
		}
	}
	diskProve(t, r, "tmpfs-to-the-last-block", 50, 400, fill, release)
	diskWait(t, 10*time.Second, "the reserve made again", func() bool {
		_, err := os.Stat(reserve)
		return err == nil
	})
	t.Logf("full-disk: mode=tmpfs-to-the-last-block reserve released, restart on the full disk took %v, reserve made again", restartedIn.Round(time.Millisecond))
}

// diskFill appends to path, a MiB every 10 ms, until the file system has
// at most leave bytes free; with leave below zero, as fast as it can
// until the file system refuses a write.
func diskFill(path string, leave int64, stop <-chan struct{}) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("f"), 1<<20)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
			return err
		}
		if leave >= 0 && int64(st.Bavail)*st.Bsize <= leave {
			return nil
		}
		if _, err := f.Write(chunk); errors.Is(err, syscall.ENOSPC) && leave < 0 {
			return nil // full to the last block, as asked
		} else if err != nil {
			return err
		}
		if leave < 0 {
			continue // at once: the last blocks go in a burst
		}
		select {
		case <-stop:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}
