package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/batonproxy/baton/proxy/buildinfo"
)

// BuildInfo is the baton_build_info gauge: 1, labelled with the build's
// version, commit and Go version, so dashboards can tell which Baton ran
// when (the same as GET /api/v1/build).
func BuildInfo() prometheus.Collector {
	info := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "baton_build_info",
		Help:        "Always 1; its labels say which build of Baton runs.",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit, "go": info.Go},
	})
	g.Set(1)
	return g
}
