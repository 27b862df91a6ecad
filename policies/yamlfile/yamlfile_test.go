package yamlfile

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type testDoc struct {
	Version int               `yaml:"version"`
	Rules   []testRule        `yaml:"rules"`
	Apps    map[string]string `yaml:"apps"`
	Limits  map[string]limit  `yaml:"limits"`
	Port    int               `yaml:"port"`
	Secret  string            `yaml:"secret"`
	Ignored string            `yaml:"-"`
}

type limit struct {
	Max int `yaml:"max"`
}

type testRule struct {
	Name    string       `yaml:"name"`
	When    testWhen     `yaml:"when"`
	Do      []testAction `yaml:"do"`
	Forward *bool        `yaml:"forward"`
	Raw     yaml.Node    `yaml:"raw"`
}

type testWhen struct {
	Keywords []string `yaml:"keywords"`
	Owner    string   `yaml:"owner"`
}

type testAction struct {
	SendText *string   `yaml:"send_text"`
	Pass     *testPass `yaml:"pass"`
}

type testPass struct {
	To     string `yaml:"to"`
	Reason string `yaml:"reason"`
}

func noEnv(string) (string, bool) { return "", false }

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func decodeErr(t *testing.T, src string, opts Options) string {
	t.Helper()
	var d testDoc
	_, probs := Decode("p.yaml", []byte(src), &d, opts)
	return probs.Error()
}

func TestUnknownKeyDeepInside(t *testing.T) {
	src := `version: 1
rules:
  - name: a
    when: {keywords: [x]}
    do:
      - send_text: hi
  - name: b
    when:
      keywords: [y]
    do:
      - pass:
          tu: inbox
          reason: r
    forwrd: true
`
	got := decodeErr(t, src, Options{})
	want := `p.yaml:12:11: unknown key "tu" in rules[1].do[0].pass (did you mean "to"?)
p.yaml:14:5: unknown key "forwrd" in rules[1] (did you mean "forward"?)`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestSeveralProblemsAtOnce(t *testing.T) {
	src := `version: one
colour: blue
rules:
  - name: a
    name: b
    forward: maybe
    when:
      keywords: agent
      owner: [bot]
    do:
      - {send_text: {a: b}, zzz: 1}
apps:
  inbox: 1
  inbox: 2
limits:
  x: {max: many, min: 1}
`
	got := decodeErr(t, src, Options{})
	want := `p.yaml:1:10: version: expected a whole number, got "one"
p.yaml:2:1: unknown key "colour" (expected one of: version, rules, apps, limits, port, secret)
p.yaml:5:5: duplicate key "name" in rules[0] (first at line 4)
p.yaml:6:14: rules[0].forward: expected true or false, got "maybe"
p.yaml:8:17: rules[0].when.keywords: expected a list, got "agent"
p.yaml:9:14: rules[0].when.owner: expected a string, got a list
p.yaml:11:21: rules[0].do[0].send_text: expected a string, got a mapping
p.yaml:11:29: unknown key "zzz" in rules[0].do[0] (expected one of: send_text, pass)
p.yaml:14:3: duplicate key "inbox" in apps (first at line 13)
p.yaml:16:12: limits.x.max: expected a whole number, got "many"
p.yaml:16:18: unknown key "min" in limits.x (did you mean "max"?)`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestDecodesWhatIsValid(t *testing.T) {
	src := `version: 1
rules:
  - name: a
    forward: false
    raw: {anything: [goes, here]}
    do:
      - pass: {to: inbox}
apps: {inbox: "263902037430900"}
`
	var d testDoc
	root, probs := Decode("p.yaml", []byte(src), &d, Options{})
	if probs != nil {
		t.Fatalf("unexpected problems: %v", probs)
	}
	if d.Version != 1 || len(d.Rules) != 1 || d.Rules[0].Forward == nil || *d.Rules[0].Forward {
		t.Errorf("decoded %+v", d)
	}
	if d.Rules[0].Raw.Kind != yaml.MappingNode || d.Rules[0].Raw.Line != 5 {
		t.Errorf("raw node = kind %v line %d; want a mapping at line 5", d.Rules[0].Raw.Kind, d.Rules[0].Raw.Line)
	}
	if d.Rules[0].Do[0].Pass.To != "inbox" || d.Apps["inbox"] != "263902037430900" {
		t.Errorf("decoded %+v", d)
	}
	if root == nil {
		t.Fatal("nil root")
	}
}

func TestEnvExpansion(t *testing.T) {
	env := mapEnv(map[string]string{
		"SECRET": "s3cr3t: [not yaml]",
		"PORT":   "8080",
		"EMPTY":  "",
		"NULLY":  "null",
	})
	src := `port: ${PORT}
secret: "${SECRET}"
apps:
  a: ${EMPTY}
  b: ${NULLY}
  c: pre-$${LITERAL}-${PORT}$
  d: $PORT
`
	var d testDoc
	_, probs := Decode("c.yaml", []byte(src), &d, Options{Env: env})
	if probs != nil {
		t.Fatalf("unexpected problems:\n%v", probs)
	}
	if d.Port != 8080 {
		t.Errorf("port = %d; want 8080", d.Port)
	}
	if d.Secret != "s3cr3t: [not yaml]" {
		t.Errorf("secret = %q", d.Secret)
	}
	want := map[string]string{"a": "", "b": "null", "c": "pre-${LITERAL}-8080$", "d": "$PORT"}
	for k, v := range want {
		if d.Apps[k] != v {
			t.Errorf("apps.%s = %q; want %q", k, d.Apps[k], v)
		}
	}
}

func TestEnvProblems(t *testing.T) {
	src := `port: 1
secret: ${MISSING}
apps:
  a: x-${ALSO_MISSING}-${MISSING}
  b: ${1BAD}
  c: ${UNTERMINATED
`
	got := decodeErr(t, src, Options{Env: noEnv})
	want := `c.yaml:2:9: environment variable MISSING is not set
c.yaml:4:6: environment variable ALSO_MISSING is not set
c.yaml:4:6: environment variable MISSING is not set
c.yaml:5:6: invalid environment variable name "1BAD" in "${1BAD}" (write "$${" for a literal "${")
c.yaml:6:6: unterminated "${" (write "$${" for a literal "${")`
	got = strings.ReplaceAll(got, "p.yaml", "c.yaml")
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestNoExpansionWithoutEnv(t *testing.T) {
	var d testDoc
	_, probs := Decode("p.yaml", []byte("secret: ${X}\n"), &d, Options{})
	if probs != nil || d.Secret != "${X}" {
		t.Errorf("secret = %q, problems %v; want it untouched", d.Secret, probs)
	}
}

func TestSyntaxAndEmpty(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", "p.yaml: empty document: the file has no YAML content"},
		{"comments only", "# nothing\n", "p.yaml: empty document: the file has no YAML content"},
		{"null document", "---\n~\n", "p.yaml:1:1: empty document: the file has no YAML content"},
		{"bad indentation", "version: 1\nrules:\n  - name: a\n   when: x\n", "p.yaml:2: invalid YAML: did not find expected '-' indicator"},
		{"unclosed flow", "version: 1\napps: {a: b\n", "p.yaml:1: invalid YAML: did not find expected ',' or '}'"},
		{"tab", "version: 1\n\tport: 2\n", "p.yaml:2: invalid YAML: found a tab character that violates indentation"},
		{"two documents", "version: 1\n---\nversion: 2\n", "p.yaml:2:1: a second YAML document (after ---) is not supported: put everything in one document"},
		{"not a mapping", "- a\n- b\n", "p.yaml:1:1: expected a mapping (key: value lines), got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decodeErr(t, tt.src, Options{}); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestTypeErrorLines(t *testing.T) {
	type durations struct {
		Timeout time.Duration `yaml:"timeout"`
		Count   uint8         `yaml:"count"`
		Ratio   float64       `yaml:"ratio"`
	}
	src := "timeout: 10s\ncount: 300\nratio: high\n"
	var d durations
	_, probs := Decode("t.yaml", []byte(src), &d, Options{})
	want := `t.yaml:2:8: count: expected a whole number >= 0, got "300"
t.yaml:3:8: ratio: expected a number, got "high"`
	if got := probs.Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if d.Timeout != 10*time.Second {
		t.Errorf("timeout = %v", d.Timeout)
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	src := `limits:
  base: &base {max: 3}
  x:
    <<: *base
  y:
    <<: [*base, {mux: 1}]
`
	got := decodeErr(t, src, Options{})
	want := `p.yaml:6:18: unknown key "mux" in limits.y (did you mean "max"?)`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	// The classic "billion laughs": the checker must visit each anchor once
	// per type, and the yaml library refuses the expansion.
	var b strings.Builder
	b.WriteString("a00: &a00 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	var out map[string][]any
	start := time.Now()
	_, probs := Decode("bomb.yaml", []byte(b.String()), &out, Options{})
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, "too large") {
		t.Errorf("problems = %v; want one saying the document is too large", probs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestAliasCycle(t *testing.T) {
	var out map[string]any
	root, probs := Decode("cycle.yaml", []byte("a: &a [*a]\n"), &out, Options{})
	if root != nil || len(probs) != 1 || !strings.Contains(probs[0].Msg, "too large") {
		t.Errorf("root %v, problems %v; want a too-large problem", root, probs)
	}
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestBadDestination(t *testing.T) {
	var d testDoc
	_, probs := Decode("p.yaml", []byte("port: 1\n"), d, Options{})
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, "non-nil pointer") {
		t.Errorf("problems = %v", probs)
	}
}

func TestPos(t *testing.T) {
	src := `version: 1
rules:
  - name: a
    do:
      - send_text: hi
      - pass:
          to: inbox
  - name: b
    when:
    do: []
`
	var d testDoc
	root, probs := Decode("p.yaml", []byte(src), &d, Options{})
	if probs != nil {
		t.Fatal(probs)
	}
	tests := []struct {
		path      []any
		line, col int
	}{
		{nil, 1, 1},
		{[]any{"version"}, 1, 10},
		{[]any{"rules"}, 2, 1},
		{[]any{"rules", 0}, 3, 5},
		{[]any{"rules", 0, "do", 1, "pass"}, 6, 9},
		{[]any{"rules", 0, "do", 1, "pass", "to"}, 7, 15},
		{[]any{"rules", 0, "do", 1, "pass", "reason"}, 6, 9}, // missing: the parent
		{[]any{"rules", 1, "when"}, 9, 5},                    // empty value: its key
		{[]any{"rules", 1, "when", "owner"}, 9, 5},
		{[]any{"rules", 7, "name"}, 2, 1}, // no such index
		{[]any{"rules", "name"}, 2, 1},    // wrong kind of step
		{[]any{"version", "x"}, 1, 10},
		{[]any{3.5}, 1, 1},
	}
	for _, tt := range tests {
		line, col := Pos(root, tt.path...)
		if line != tt.line || col != tt.col {
			t.Errorf("Pos(%v) = %d:%d; want %d:%d", tt.path, line, col, tt.line, tt.col)
		}
	}
	if l, c := Pos(nil, "x"); l != 0 || c != 0 {
		t.Errorf("Pos(nil) = %d:%d", l, c)
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{
		{File: "b.yaml", Line: 3, Col: 1, Msg: "three"},
		{File: "a.yaml", Line: 9, Col: 2, Msg: "nine"},
		{File: "b.yaml", Line: 1, Col: 5, Msg: "one"},
		{File: "a.yaml", Msg: "no position"},
	}
	want := "b.yaml:1:5: one\nb.yaml:3:1: three\na.yaml: no position\na.yaml:9:2: nine"
	if got := ps.Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	var err error = ps
	var target Problems
	if !errors.As(err, &target) || len(target) != 4 {
		t.Error("errors.As failed")
	}
	if Problems(nil).Err() != nil {
		t.Error("nil Problems should give a nil error")
	}
	if (Problem{File: "f", Line: 2, Msg: "m"}).String() != "f:2: m" {
		t.Error("line without column")
	}
}
