package yamlfile

import (
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a file, at a position an editor can jump
// to. Line and Col are 1-based; zero means "unknown" and is left out of the
// rendered text.
type Problem struct {
	File string
	Line int
	Col  int
	Msg  string
}

// String renders the problem as "file:line:col: msg", the form compilers use
// and editors and CI annotators recognise.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		if p.Col > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one or more files. It is an error so
// that loaders can return all of them at once: ops fix a file in one round
// instead of one error per restart.
type Problems []Problem

// Error renders one problem per line, in file order, then by line and
// column.
func (ps Problems) Error() string {
	sorted := append(Problems(nil), ps...)
	sorted.Sort()
	lines := make([]string, len(sorted))
	for i, p := range sorted {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or a nil error when there are no problems.
// It avoids the typed-nil trap of returning an empty Problems as error.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Sort orders the problems by file (in order of first appearance, so files
// keep the order they were given in), then by line and column. Problems at
// the same position keep the order they were found in.
func (ps Problems) Sort() {
	rank := make(map[string]int)
	for _, p := range ps {
		if _, ok := rank[p.File]; !ok {
			rank[p.File] = len(rank)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if rank[a.File] != rank[b.File] {
			return rank[a.File] < rank[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
