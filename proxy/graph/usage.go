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

// The other usage headers. X-App-Usage reports the app's platform usage,
// X-Page-Usage a Page's (for user tokens); both as
//
//	{"call_count":28,"total_time":25,"total_cputime":25}
//
// in percent of the limit.
const (
	HeaderAppUsage  = "X-App-Usage"
	HeaderPageUsage = "X-Page-Usage"
)

// The kinds of usage, one per header: the kind label of
// baton_graph_usage_percent, a fixed set.
const (
	UsageApp      = "app"
	UsagePage     = "page"
	UsageBusiness = "business_use_case"
)

// usageKinds indexes usage.percent.
var usageKinds = [...]string{UsageApp, UsagePage, UsageBusiness}

// maxUsagePercent bounds a figure read, so a hostile value cannot turn
// into an absurd spacing or metric.
const maxUsagePercent = 1000

// usage is what one answer's usage headers say.
type usage struct {
	// percent is the highest figure (call_count, total_time or
	// total_cputime) of each header, by usageKinds index; -1 when the
	// header was absent or unreadable.
	percent [len(usageKinds)]float64
	// regain is X-Business-Use-Case-Usage's
	// estimated_time_to_regain_access (see regainAfter).
	regain time.Duration
}

// highest is the highest figure the answer gave, -1 when it gave none.
func (u usage) highest() float64 {
	h := -1.0
	for _, p := range u.percent {
		h = max(h, p)
	}
	return h
}

// headerGetter is the part of http.Header readUsage needs.
type headerGetter interface{ Get(string) string }

// readUsage reads the usage headers of an answer.
func readUsage(h headerGetter) usage {
	return usage{
		percent: [len(usageKinds)]float64{
			appUsagePercent([]byte(h.Get(HeaderAppUsage))),
			appUsagePercent([]byte(h.Get(HeaderPageUsage))),
			businessUsagePercent([]byte(h.Get(HeaderBusinessUseCaseUsage))),
		},
		regain: regainAfter([]byte(h.Get(HeaderBusinessUseCaseUsage))),
	}
}

// usageFigures are the percentages both header shapes carry.
type usageFigures struct {
	CallCount    json.Number `json:"call_count"`
	TotalTime    json.Number `json:"total_time"`
	TotalCPUTime json.Number `json:"total_cputime"`
}

// highest returns the highest readable figure, clamped to
// [0, maxUsagePercent]; -1 when none is readable.
func (f usageFigures) highest() float64 {
	h := -1.0
	for _, n := range []json.Number{f.CallCount, f.TotalTime, f.TotalCPUTime} {
		v, err := n.Float64()
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		h = max(h, min(max(v, 0), maxUsagePercent))
	}
	return h
}

// appUsagePercent reads X-App-Usage or X-Page-Usage and returns the
// highest of its figures, in percent; -1 when the header is absent,
// unreadable or gives none.
func appUsagePercent(header []byte) float64 {
	header = bytes.TrimSpace(header)
	if len(header) == 0 || len(header) > maxUsageHeader {
		return -1
	}
	var f usageFigures
	if json.Unmarshal(header, &f) != nil {
		return -1
	}
	return f.highest()
}

// businessUsagePercent reads X-Business-Use-Case-Usage (see regainAfter
// for its shape) and returns the highest figure of any of its entries,
// in percent; -1 when the header is absent, unreadable or gives none.
func businessUsagePercent(header []byte) float64 {
	header = bytes.TrimSpace(header)
	if len(header) == 0 || len(header) > maxUsageHeader {
		return -1
	}
	var byID map[string][]usageFigures
	if json.Unmarshal(header, &byID) != nil {
		return -1
	}
	h := -1.0
	for _, entries := range byID {
		for _, e := range entries {
			h = max(h, e.highest())
		}
	}
	return h
}
