//go:build !faults

package faults

import "time"

// The short proofs, part of the ordinary `go test -race ./...`: a few
// seconds each. `go test -tags faults` runs the same proofs at the sizes
// of sizes_long_test.go.
var sizes = proofSizes{
	long: false,
	crash: crashSize{
		users: 20, rate: 200, kills: 3, maxUp: 600 * time.Millisecond, within: 60 * time.Second,
	},
	graceful: gracefulSize{
		users: 20, rate: 200, restarts: 2, up: 300 * time.Millisecond, within: 60 * time.Second,
	},
	outage: outageSize{
		users: 20, rate: 200, handovers: 3, failing: 1500 * time.Millisecond, refusing: 1500 * time.Millisecond,
		between: 300 * time.Millisecond, within: 60 * time.Second,
	},
	storm: stormSize{
		users: 20, before: 2, rate: 60, failure: 0.3, burst: time.Second, burstEvery: 0, quiet: time.Second,
		within: 90 * time.Second,
	},
}
