package yamlfile

import (
	"errors"
	"testing"
)

func TestReporter(t *testing.T) {
	src := `version: 1
rules:
  - name: a
    when:
      keywords: agent
    do: []
  - name: b
    forwrd: true
`
	var d testDoc
	root, probs := Decode("p.yaml", []byte(src), &d, Options{})
	r := NewReporter("p.yaml", root, probs)

	// Covered by the decode problem inside the value: not repeated.
	r.Add([]any{"rules", 0, "when"}, "needs at least one trigger")
	r.Add([]any{"rules", 0, "when", "keywords"}, "empty")
	// Missing key: its parent holds a decode problem (the typo), so a
	// "required" for the misspelled key is not repeated either.
	r.Add([]any{"rules", 1, "forward"}, "required")
	// Independent problems are kept, at the value or at the parent.
	r.Add([]any{"rules", 0, "do"}, "needs at least one action")
	r.Add([]any{"rules", 0, "name"}, "bad name %q", "a")
	// At the top level only a problem with the whole document blocks.
	r.Add([]any{"owner"}, "required")

	want := `p.yaml:1:1: owner: required
p.yaml:3:11: rules[0].name: bad name "a"
p.yaml:6:5: rules[0].do: needs at least one action`
	if got := r.Problems.Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if !r.Reported("rules", 1) || r.Reported("rules", 0, "name") || r.Reported() {
		t.Error("Reported gives the wrong answer")
	}
}

func TestLookupLenPresent(t *testing.T) {
	src := "a:\n  - x\n  - ~\n  - &y {k: v}\nb: *y\nc:\n"
	var out map[string]any
	root, probs := Decode("p.yaml", []byte(src), &out, Options{})
	if probs != nil {
		t.Fatal(probs)
	}
	if Len(root, "a") != 3 || Len(root, "b") != 0 || Len(root, "zzz") != 0 {
		t.Error("Len")
	}
	if n := Lookup(root, "b", "k"); n == nil || n.Value != "v" {
		t.Error("Lookup through an alias")
	}
	if !Present(root, "a", 0) || Present(root, "a", 1) || Present(root, "c") || Present(root, "d") {
		t.Error("Present")
	}
	if Lookup(nil, "a") != nil || Lookup(root, "a", "x") != nil || Lookup(root, 1.5) != nil {
		t.Error("Lookup of a missing path")
	}
	if got := PathString("rules", 2, "do", 0, "pass"); got != "rules[2].do[0].pass" {
		t.Errorf("PathString = %q", got)
	}
}

// FuzzDecode checks that Decode never panics on hostile input, with and
// without environment expansion, and always returns Problems with a file.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    forwrd: x\n"), true)
	f.Add([]byte("secret: ${A}$${B}${\nport: ${PORT}\n"), true)
	f.Add([]byte("a: &a [*a, *a]\nb: {<<: *a}\n"), false)
	f.Add([]byte("limits: {x: {<<: [{max: 1}, {mux: 2}]}}\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, expand bool) {
		var opts Options
		if expand {
			opts.Env = func(name string) (string, bool) { return "1", len(name)%2 == 0 }
		}
		var d testDoc
		root, probs := Decode("f.yaml", data, &d, opts)
		for _, p := range probs {
			if p.File != "f.yaml" || p.Msg == "" {
				t.Fatalf("bad problem %+v", p)
			}
		}
		var err error = probs
		var target Problems
		if !errors.As(err, &target) {
			t.Fatal("Problems is not an error")
		}
		_, _ = Pos(root, "rules", 0, "do", 0)
	})
}
