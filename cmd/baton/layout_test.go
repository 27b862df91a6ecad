package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests keep the habits of the codebase: every package says what it
// is for, and the policy engine stays pure.

const module = "github.com/batonproxy/baton"

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

// TestPoliciesArePure: policy evaluation must not reach the network, the
// store or the logger, so it can run in check/explain tools and be tested
// without any of them.
func TestPoliciesArePure(t *testing.T) {
	pkgs := packages(t)
	forbidden := []string{"github.com/valyala/fasthttp", "github.com/dgraph-io/badger", "go.uber.org/zap", "net/http", module + "/proxy", module + "/state"}
	seen := map[string]bool{}
	var visit func(dir, via string)
	visit = func(dir, via string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		for _, f := range pkgs[dir] {
			ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range ast.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if path == bad || strings.HasPrefix(path, bad+"/") {
						t.Errorf("%s imports %s (via %s)", f, path, via)
					}
				}
				if strings.HasPrefix(path, module+"/") {
					visit(strings.TrimPrefix(path, module+"/"), via+" -> "+path)
				}
			}
		}
	}
	visit("policies", "policies")
}
