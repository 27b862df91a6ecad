// Package buildinfo says which Baton this is. Version and Commit are set
// at build time (go build -ldflags "-X
// github.com/batonproxy/baton/proxy/buildinfo.Version=v1.2.3 -X
// github.com/batonproxy/baton/proxy/buildinfo.Commit=abc123"); a plain
// build reports what the Go toolchain recorded, or "dev".
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by the linker; empty in a plain build.
var (
	Version string
	Commit  string
)

// Info is the build's identity.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// Get returns the build's identity: the linker's values first, then the
// module version and VCS revision the toolchain embedded, then "dev".
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
