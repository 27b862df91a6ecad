package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pinnedEnv marks a process that already runs on its one core.
const pinnedEnv = "BATON_BENCH_CPU"

// PinSelf re-executes the current command under `taskset -c cpu`, so the
// generator and every process it starts (they inherit the mask, and Go
// sizes GOMAXPROCS from it) share one core and the other stays idle. It
// returns only when pinning is impossible or already done: the description
// of the layout that will be used.
func PinSelf(cpu int, args []string) string {
	if v := os.Getenv(pinnedEnv); v != "" {
		return "all processes pinned to CPU " + v
	}
	if cpu < 0 {
		return fmt.Sprintf("not pinned (--cpu -1), %d CPUs", runtime.NumCPU())
	}
	if runtime.NumCPU() <= cpu {
		return fmt.Sprintf("not pinned: CPU %d does not exist (%d CPUs)", cpu, runtime.NumCPU())
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return "not pinned: taskset not found (install util-linux)"
	}
	self, err := os.Executable()
	if err != nil {
		return "not pinned: " + err.Error()
	}
	env := append(os.Environ(), pinnedEnv+"="+strconv.Itoa(cpu))
	argv := append([]string{"taskset", "-c", strconv.Itoa(cpu), self}, args...)
	err = syscall.Exec(taskset, argv, env)
	return "not pinned: " + err.Error() // Exec returns only on failure
}

// proc is a child process under test.
type proc struct {
	name  string
	cmd   *exec.Cmd
	addr  string
	admin string // Baton's admin listener (metrics)
	stdin io.WriteCloser
	log   string
}

// startChild starts `self bench-child kind` and waits for its address.
func startChild(dir, kind, bot string, base int64) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &proc{name: kind, log: filepath.Join(dir, kind+".log")}
	p.cmd = exec.Command(self, "bench-child", "--kind", kind, "--bot", bot, "--base", strconv.FormatInt(base, 10))
	logf, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		p.stop()
		return nil, fmt.Errorf("%s did not start: %q %v (see %s)", kind, line, err, p.log)
	}
	p.addr = addr
	return p, nil
}

// startBaton runs `self serve --config cfg` and waits until it answers.
// defaultMemoryLimit is the GOMEMLIMIT Baton runs with in the benchmark
// unless the environment sets one.
const defaultMemoryLimit = "128MiB"

// batonMemoryLimit is the GOMEMLIMIT Baton runs with.
func batonMemoryLimit() string {
	if l := os.Getenv("GOMEMLIMIT"); l != "" {
		return l
	}
	return defaultMemoryLimit
}

func startBaton(dir, cfg, addr string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &proc{name: "baton", addr: addr, log: filepath.Join(dir, "baton.log")}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(self, "serve", "--config", cfg)
	p.cmd.Stderr, p.cmd.Stdout = logf, logf
	// As the README advises: a soft limit makes the garbage collector work
	// harder near it, rather than let the heap double.
	p.cmd.Env = append(os.Environ(), "GOMEMLIMIT="+batonMemoryLimit())
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start baton: %w", err)
	}
	return p, nil
}

// stop ends the process gracefully and waits for it.
func (p *proc) stop() error {
	if p == nil || p.cmd.Process == nil {
		return nil
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == -1 {
			return nil // ended by our signal
		}
		return err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within 30s; killed", p.name)
	}
}

// cpuTime is the CPU the process has used (user + system), from
// /proc/<pid>/stat in clock ticks of 10 ms.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPUTime is the CPU this process (the load generator) has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// coreUse is CPU seconds per second of the server under test, its fake bot
// and the load generator, which share one core: near 1 in all, requests
// queue whatever the server does.
type coreUse struct{ Server, Bot, Generator float64 }

func (c coreUse) total() float64 { return c.Server + c.Bot + c.Generator }

// memUse is a process's resident memory, in bytes.
type memUse struct {
	RSS, Peak int64
	// File is the part of RSS backed by files: Badger's memory-mapped
	// tables and logs (page cache the kernel can take back) and the binary.
	File int64
}

// memory reports the resident set, its peak and its file-backed part.
func (p *proc) memory() memUse {
	var m memUse
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "VmHWM":
			m.Peak = n << 10
		case "RssFile":
			m.File = n << 10
		}
	}
	return m
}
