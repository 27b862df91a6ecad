//go:build !linux

package bench

import "time"

// pacer sleeps the open-loop generator until each request is due; outside
// Linux with Go's timers (see pace_linux.go for why Linux does better).
type pacer struct{}

func newPacer() *pacer { return &pacer{} }

func (p *pacer) sleepUntil(due time.Time) { time.Sleep(time.Until(due)) }

func (p *pacer) release() {}
