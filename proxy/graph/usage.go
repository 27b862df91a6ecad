package graph

import (
	"bytes"
	"encoding/json"
	"math"
	"time"
)

// HeaderBusinessUseCaseUsage is the header in which the Graph API reports
// a Page token's business-use-case usage, including how long a throttled
// token waits before it may call again.
const HeaderBusinessUseCaseUsage = "X-Business-Use-Case-Usage"

// maxRegainAfter bounds the wait taken from the usage header, so a garbled
// or hostile value cannot park a token for days.
const maxRegainAfter = 24 * time.Hour

// maxUsageHeader bounds the header decoded: Meta's is a few hundred bytes.
const maxUsageHeader = 16 << 10

// regainAfter reads X-Business-Use-Case-Usage, e.g.
//
//	{"104455667788990":[{"type":"pages","call_count":100,"total_cputime":25,
//	  "total_time":25,"estimated_time_to_regain_access":19}]}
//
// and returns the longest estimated_time_to_regain_access it gives (in
// minutes on the wire), capped at maxRegainAfter; 0 when the header is
// absent, unreadable or gives none.
func regainAfter(header []byte) time.Duration {
	header = bytes.TrimSpace(header)
	if len(header) == 0 || len(header) > maxUsageHeader {
		return 0
	}
	var usage map[string][]struct {
		Regain json.Number `json:"estimated_time_to_regain_access"`
	}
	if json.Unmarshal(header, &usage) != nil {
		return 0
	}
	var longest float64
	for _, entries := range usage {
		for _, e := range entries {
			if m, err := e.Regain.Float64(); err == nil && m > longest && !math.IsInf(m, 0) {
				longest = m
			}
		}
	}
	if longest <= 0 {
		return 0
	}
	if longest >= maxRegainAfter.Minutes() {
		return maxRegainAfter
	}
	return time.Duration(longest * float64(time.Minute))
}
