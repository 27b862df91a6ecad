//go:build faults

package faults

import "time"

// The full proofs, with the sizes of the issue that asked for them:
//
//	go test -tags faults -timeout 60m -v ./proxy/faults/
var sizes = proofSizes{
	long: true,
	crash: crashSize{
		users: 50, rate: 400, kills: 25, maxUp: 2 * time.Second, within: 5 * time.Minute,
	},
	graceful: gracefulSize{
		users: 50, rate: 400, restarts: 10, up: 2 * time.Second, within: 5 * time.Minute,
	},
	outage: outageSize{
		users: 50, rate: 400, handovers: 5, failing: 3 * time.Minute, refusing: time.Minute,
		between: 5 * time.Second, within: 5 * time.Minute,
	},
	storm: stormSize{
		users: 200, before: 2, rate: 100, failure: 0.3, burst: 3 * time.Second, burstEvery: 10 * time.Second,
		quiet: 5 * time.Second, within: 10 * time.Minute,
	},
}
