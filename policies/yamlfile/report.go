package yamlfile

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Reporter collects the semantic problems found in one decoded file after
// Decode, each at the position of the value it is about. The policy
// compiler and the config loader both use it, so their messages look
// alike: "file:line:col: key.path: message".
type Reporter struct {
	File     string
	Root     *yaml.Node
	Problems Problems

	// decoded holds the positions of the problems Decode reported; see
	// Reported.
	decoded map[[2]int]bool
}

// NewReporter starts a Reporter for a file Decode returned root and
// decodeProblems for. The decode problems are not copied into Problems;
// they only suppress repeats.
func NewReporter(file string, root *yaml.Node, decodeProblems Problems) *Reporter {
	r := &Reporter{File: file, Root: root, decoded: make(map[[2]int]bool, len(decodeProblems))}
	for _, p := range decodeProblems {
		r.decoded[[2]int{p.Line, p.Col}] = true
	}
	return r
}

// Add records a problem about the value at path (see Pos), prefixed with
// the path, unless Reported(path) says Decode already covered it.
func (r *Reporter) Add(path []any, format string, args ...any) {
	if r.Reported(path...) {
		return
	}
	line, col := Pos(r.Root, path...)
	msg := fmt.Sprintf(format, args...)
	if p := PathString(path...); p != "" {
		msg = p + ": " + msg
	}
	r.Problems = append(r.Problems, Problem{File: r.File, Line: line, Col: col, Msg: msg})
}

// Reported reports whether Decode already found a problem inside the
// value at path, or inside its nearest existing ancestor when path is
// missing. A value of the wrong type decodes as empty, and a semantic
// check on it ("keywords: agent" is not a list, so "needs at least one
// trigger") would only repeat the first problem in a more confusing way.
// At the top level only a problem with the document itself counts, so a
// typo somewhere does not hide "version: required".
func (r *Reporter) Reported(path ...any) bool {
	if len(r.decoded) == 0 || r.Root == nil {
		return false
	}
	n, depth := deref(r.Root), 0
	for i := range path {
		next := Lookup(r.Root, path[:i+1]...)
		if next == nil {
			break
		}
		n, depth = next, i+1
	}
	if depth == 0 {
		return r.decoded[[2]int{n.Line, n.Column}]
	}
	if depth < len(path) {
		// A missing key: only a problem with the parent itself or one of
		// its keys (a typo of the missing key) covers it; a bad value of a
		// sibling, like an unset ${VAR}, does not.
		return r.decoded[[2]int{n.Line, n.Column}] || r.keyReported(n)
	}
	return r.within(n)
}

func (r *Reporter) keyReported(n *yaml.Node) bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i < len(n.Content); i += 2 {
		if r.decoded[[2]int{n.Content[i].Line, n.Content[i].Column}] {
			return true
		}
	}
	return false
}

func (r *Reporter) within(n *yaml.Node) bool {
	if r.decoded[[2]int{n.Line, n.Column}] {
		return true
	}
	for _, c := range n.Content {
		if r.within(c) {
			return true
		}
	}
	return false
}

// PathString renders a Pos path the way problems name values:
// rules[2].do[0].pass.
func PathString(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(p) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, p)
		}
	}
	return b.String()
}

// Len is the number of items in the list at path below root, 0 when there
// is no list there. Callers walk lists by index with Lookup rather than
// through decoded slices, because the yaml library silently drops list
// items it cannot decode, which would shift every later index.
func Len(root *yaml.Node, path ...any) int {
	n := Lookup(root, path...)
	if n == nil || n.Kind != yaml.SequenceNode {
		return 0
	}
	return len(n.Content)
}
