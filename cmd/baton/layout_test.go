package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// This test keeps a habit of the codebase: every package says what it is
// for. (That the policy engine stays pure is checked in policies.)

// packages maps each package directory (relative to the repository root) to
// its non-test Go files.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "../.." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, _ := filepath.Rel("../..", filepath.Dir(path))
			out[filepath.ToSlash(rel)] = append(out[filepath.ToSlash(rel)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryPackageHasOneDocComment(t *testing.T) {
	pkgs := packages(t)
	for _, must := range []string{"cmd/baton", "proxy", "proxy/app", "state", "policies"} {
		if len(pkgs[must]) == 0 {
			t.Fatalf("package %s not found; is the walk broken?", must)
		}
	}
	for dir, files := range pkgs {
		docs := 0
		for _, f := range files {
			ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if ast.Doc != nil {
				docs++
			}
		}
		if docs != 1 {
			t.Errorf("package %s has %d package doc comments; want exactly 1", dir, docs)
		}
	}
}
