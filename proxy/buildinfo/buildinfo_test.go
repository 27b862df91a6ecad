package buildinfo

import (
	"runtime"
	"testing"
)

func TestLinkerValuesWin(t *testing.T) {
	old, oldCommit := Version, Commit
	t.Cleanup(func() { Version, Commit = old, oldCommit })
	Version, Commit = "v9.8.7", "abc123"
	got := Get()
	if got.Version != "v9.8.7" || got.Commit != "abc123" || got.Go != runtime.Version() {
		t.Errorf("Get() = %+v; want the linker's version and commit and this Go", got)
	}
}

func TestPlainBuildSaysSomething(t *testing.T) {
	old, oldCommit := Version, Commit
	t.Cleanup(func() { Version, Commit = old, oldCommit })
	Version, Commit = "", ""
	got := Get()
	if got.Version == "" || got.Commit == "" {
		t.Errorf("Get() = %+v; want a version and a commit even in a plain build", got)
	}
}
