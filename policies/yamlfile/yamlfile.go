// Package yamlfile decodes ops-written YAML strictly and reports every
// problem at once, each with file:line:col.
//
// It exists because go.yaml.in/yaml/v3 alone falls short in three ways for
// hand-edited files: Decoder.KnownFields reports only the first unknown key
// and is silently lost under node.Decode (yaml/go-yaml#321, go-yaml/yaml#460),
// type errors carry a line but no column or key path, and there is no
// ${VAR} expansion for secrets. Decode therefore parses into a yaml.Node,
// expands ${VAR} in scalar values, walks the node tree against the Go type
// of the destination by reflection (unknown keys, duplicate keys, values of
// the wrong shape), and only then decodes.
//
// The destination must be made of plain structs (no custom UnmarshalYAML):
// fields whose values need a semantic check with a position are better
// typed as yaml.Node, or checked afterwards with Pos.
package yamlfile

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Options tunes Decode.
type Options struct {
	// Env looks up the variables referenced as ${NAME} in scalar values.
	// Nil disables expansion, leaving values untouched: policy files use
	// that, so a message text may contain "${" literally. When enabled,
	// "$${" stands for a literal "${". Mapping keys are never expanded.
	//
	// Expansion happens on the parsed tree, not on the raw text, so a value
	// containing YAML syntax cannot change the structure of the file. An
	// expanded plain (unquoted) scalar is typed as if its result had been
	// written in the file (so "${PORT}" can fill an int), except that a
	// result that would read as null stays a string.
	Env func(name string) (string, bool)
}

const (
	nullTag  = "!!null"
	strTag   = "!!str"
	mergeTag = "!!merge"
)

// Decode parses data (the contents of file, which is only used in
// problems) into out, which must be a non-nil pointer to plain Go types
// with `yaml:"name"` tags.
//
// It returns the document's root node, for Pos, whenever the file parsed,
// even if there were problems, so callers can go on to semantic checks and
// report everything in one round. The root is nil only when the file is
// empty or not valid YAML. Problems are sorted by position.
func Decode(file string, data []byte, out any, opts Options) (root *yaml.Node, probs Problems) {
	defer func() {
		// The YAML library has panicked on hostile input in the past; an
		// input file must never take the process down.
		if r := recover(); r != nil {
			root = nil
			probs = append(probs, Problem{File: file, Msg: fmt.Sprintf("internal error decoding YAML: %v", r)})
			probs.Sort()
		}
	}()

	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("internal error: yamlfile.Decode needs a non-nil pointer, got %T", out)}}
	}

	root, probs = parse(file, data)
	if root == nil {
		return nil, probs
	}
	if expandedSize(root, make(map[*yaml.Node]int)) > MaxNodes {
		// Stop before any decoding: every later step (ours and the
		// caller's) walks the tree with aliases expanded.
		return nil, append(probs, Problem{File: file, Line: 1, Col: 1,
			Msg: fmt.Sprintf("document is too large: more than %d values once aliases are expanded", MaxNodes)})
	}
	if opts.Env != nil {
		expandEnv(file, root, opts.Env, &probs)
	}

	c := checker{file: file, done: make(map[visit]bool)}
	c.check(root, rv.Type().Elem(), "")
	probs = append(probs, c.probs...)

	if err := root.Decode(out); err != nil {
		probs = append(probs, decodeProblems(file, root, err, probs)...)
	}
	probs.Sort()
	return root, probs
}

// MaxNodes bounds the size of a document with its aliases expanded. A
// few lines of anchors and aliases can stand for billions of values (the
// "billion laughs"); hand-written config and policy files are many orders
// of magnitude below this.
const MaxNodes = 200_000

// expandedSize counts the nodes below n with aliases expanded, saturating
// just above MaxNodes. An alias cycle counts as too large.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if v, ok := memo[n]; ok {
		if v < 0 {
			return MaxNodes + 1 // a cycle: the node contains itself
		}
		return v
	}
	memo[n] = -1
	size := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		size += expandedSize(n.Alias, memo)
	}
	for _, c := range n.Content {
		if size > MaxNodes {
			break
		}
		size += expandedSize(c, memo)
	}
	size = min(size, MaxNodes+1)
	memo[n] = size
	return size
}

var (
	syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	typeLineRE   = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// parse reads exactly one YAML document.
func parse(file string, data []byte) (*yaml.Node, Problems) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{{File: file, Msg: "empty document: the file has no YAML content"}}
		}
		return nil, Problems{syntaxProblem(file, err)}
	}
	if doc.Kind == yaml.DocumentNode && (len(doc.Content) == 0 || isNull(doc.Content[0])) {
		return nil, Problems{{File: file, Line: doc.Line, Col: doc.Column, Msg: "empty document: the file has no YAML content"}}
	}

	// A second document would be silently ignored by a plain Unmarshal,
	// which hides half a file from its author.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return &doc, Problems{syntaxProblem(file, err)}
	default:
		return &doc, Problems{{File: file, Line: extra.Line, Col: extra.Column,
			Msg: "a second YAML document (after ---) is not supported: put everything in one document"}}
	}
	return &doc, nil
}

func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	if m := syntaxLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decodeProblems turns the yaml library's errors into Problems. The checker
// already reports wrong shapes with a key path and column, so errors on a
// line that already has a problem are dropped as duplicates; what remains
// is anything the checker did not foresee.
func decodeProblems(file string, root *yaml.Node, err error, have Problems) Problems {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Problems{{File: file, Msg: "decoding: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	reported := make(map[int]bool, len(have))
	for _, p := range have {
		reported[p.Line] = true
	}
	var cols map[int]int // line -> leftmost column, built on first need
	var out Problems
	for _, e := range te.Errors {
		m := typeLineRE.FindStringSubmatch(e)
		if m == nil {
			out = append(out, Problem{File: file, Msg: e})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if reported[line] {
			continue
		}
		reported[line] = true
		if cols == nil {
			cols = make(map[int]int)
			leftmostColumns(root, cols)
		}
		out = append(out, Problem{File: file, Line: line, Col: cols[line], Msg: m[2]})
	}
	return out
}

// leftmostColumns records, for every line, the column of the leftmost
// node starting on it, to give the yaml library's type errors (which only
// carry a line) a column.
func leftmostColumns(n *yaml.Node, cols map[int]int) {
	if c, ok := cols[n.Line]; !ok || n.Column < c {
		cols[n.Line] = n.Column
	}
	for _, c := range n.Content {
		leftmostColumns(c, cols)
	}
}

// isNull reports whether n is a null scalar, written or implied.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// expandEnv replaces ${NAME} in every scalar value below n.
func expandEnv(file string, n *yaml.Node, env func(string) (string, bool), probs *Problems) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			expandEnv(file, c, env, probs)
		}
	case yaml.MappingNode:
		// Values only: keys are part of the file's structure.
		for i := 1; i < len(n.Content); i += 2 {
			expandEnv(file, n.Content[i], env, probs)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		v, msgs := expandString(n.Value, env)
		for _, m := range msgs {
			*probs = append(*probs, Problem{File: file, Line: n.Line, Col: n.Column, Msg: m})
		}
		if v == n.Value {
			return
		}
		n.Value = v
		const explicit = yaml.TaggedStyle | yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
		if n.Style&explicit == 0 {
			n.Tag = ""
			if n.Tag = n.ShortTag(); n.Tag == nullTag {
				n.Tag = strTag
			}
		}
	}
	// Alias nodes share their anchor's node, which is expanded where it
	// is defined.
}

// expandString expands ${NAME} and $${ in s, returning the result and a
// message for every reference that could not be expanded.
func expandString(s string, env func(string) (string, bool)) (string, []string) {
	var b strings.Builder
	var msgs []string
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		j += i
		b.WriteString(s[i:j])
		switch {
		case strings.HasPrefix(s[j:], "$${"):
			b.WriteString("${")
			i = j + 3
		case strings.HasPrefix(s[j:], "${"):
			end := strings.IndexByte(s[j+2:], '}')
			if end < 0 {
				msgs = append(msgs, `unterminated "${" (write "$${" for a literal "${")`)
				b.WriteString(s[j:])
				i = len(s)
				break
			}
			name := s[j+2 : j+2+end]
			switch v, ok := env(name); {
			case !validEnvName(name):
				msgs = append(msgs, fmt.Sprintf("invalid environment variable name %q in \"${%s}\" (write \"$${\" for a literal \"${\")", name, name))
			case !ok:
				msgs = append(msgs, fmt.Sprintf("environment variable %s is not set", name))
			default:
				b.WriteString(v)
			}
			i = j + 2 + end + 1
		default:
			b.WriteByte('$')
			i = j + 1
		}
	}
	return b.String(), msgs
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checker walks a node tree alongside a Go type.
type checker struct {
	file  string
	probs Problems
	// done bounds the work on aliases: each (anchor, type) pair is
	// checked once, so an alias bomb costs no more than the tree itself.
	done map[visit]bool
}

type visit struct {
	n *yaml.Node
	t reflect.Type
}

var (
	nodeType            = reflect.TypeFor[yaml.Node]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (c *checker) add(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.probs = append(c.probs, Problem{File: c.file, Line: n.Line, Col: n.Column, Msg: msg})
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return // kept raw on purpose; the caller validates it
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		k := visit{n.Alias, t}
		if c.done[k] {
			return
		}
		c.done[k] = true
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		c.check(n.Content[0], t, path)
		return
	}
	if isNull(n) {
		return // leaves the zero value; required fields are the caller's job
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		return // has its own rules; node.Decode reports its errors
	}

	switch t.Kind() {
	case reflect.Interface:
		return
	case reflect.Struct:
		c.checkStruct(n, t, path)
	case reflect.Map:
		c.checkMap(n, t, path)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
			return // !!binary
		}
		if n.Kind != yaml.SequenceNode {
			c.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.check(e, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	default:
		c.checkScalar(n, t, path)
	}
}

func (c *checker) checkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.add(n, path, "expected a mapping (key: value lines), got %s", describe(n))
		return
	}
	info := structInfoOf(t)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.add(k, path, "keys must be plain strings, got %s", describe(k))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == mergeTag {
			c.checkMerge(v, t, path)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.add(k, "", "duplicate key %q%s (first at line %d)", k.Value, in(path), first.Line)
			continue
		}
		seen[k.Value] = k
		ft, ok := info.fields[k.Value]
		switch {
		case ok:
			c.check(v, ft, join(path, k.Value))
		case info.inlineMap != nil:
			c.check(v, info.inlineMap, join(path, k.Value))
		default:
			c.add(k, "", "unknown key %q%s %s", k.Value, in(path), hint(k.Value, info.names))
		}
	}
}

// checkMerge checks the mappings merged in with "<<: *anchor" against the
// type of the mapping they are merged into.
func (c *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			c.check(e, t, path)
		}
		return
	}
	c.check(v, t, path)
}

func (c *checker) checkMap(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.add(n, path, "expected a mapping (key: value lines), got %s", describe(n))
		return
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode {
			if k.Value == "<<" && k.ShortTag() == mergeTag {
				c.checkMerge(v, t, path)
				continue
			}
			if first, dup := seen[k.Value]; dup {
				c.add(k, "", "duplicate key %q%s (first at line %d)", k.Value, in(path), first.Line)
				continue
			}
			seen[k.Value] = k
		}
		c.check(v, t.Elem(), join(path, k.Value))
	}
}

func (c *checker) checkScalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		c.add(n, path, "expected %s, got %s", want(t), describe(n))
		return
	}
	// Decoding the one scalar with the yaml library itself keeps the
	// checker's idea of a valid value identical to the final decode.
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		c.add(n, path, "expected %s, got %q", want(t), n.Value)
	}
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number >= 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a value of type " + t.String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// hint suggests the closest known key for a typo, or lists the known keys.
func hint(key string, names []string) string {
	best, bestD := "", 3
	for _, name := range names {
		if d := distance(strings.ToLower(key), name); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("(did you mean %q?)", best)
	}
	if len(names) == 0 {
		return "(no keys are allowed here)"
	}
	return "(expected one of: " + strings.Join(names, ", ") + ")"
}

// distance is the Levenshtein edit distance, capped for long inputs
// since it only feeds a hint.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// structInfo is what the checker needs to know about a struct type.
type structInfo struct {
	fields    map[string]reflect.Type
	names     []string     // in declaration order, for hints
	inlineMap reflect.Type // element type of an ",inline" map, if any
}

var structInfos sync.Map // reflect.Type -> *structInfo

// structInfoOf mirrors the yaml library's field naming: the tag name, or
// the lowercased field name; "-" skips; ",inline" merges a struct's fields
// or accepts any key for a map.
func structInfoOf(t reflect.Type) *structInfo {
	if v, ok := structInfos.Load(t); ok {
		return v.(*structInfo)
	}
	info := &structInfo{fields: make(map[string]reflect.Type)}
	addFields(info, t, 0)
	v, _ := structInfos.LoadOrStore(t, info)
	return v.(*structInfo)
}

func addFields(info *structInfo, t reflect.Type, depth int) {
	if depth > 8 {
		return // inline cycles are invalid for yaml anyway
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if hasOpt(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				addFields(info, ft, depth+1)
			case reflect.Map:
				info.inlineMap = ft.Elem()
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if _, dup := info.fields[name]; !dup {
			info.names = append(info.names, name)
		}
		info.fields[name] = f.Type
	}
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// Pos finds the position of the node at path below root, for reporting a
// semantic problem at the right line. Path elements are mapping keys
// (string) and sequence indices (int), e.g. Pos(root, "rules", 3, "do", 0,
// "pass").
//
// A scalar value is reported at the value itself; a mapping, a list or an
// empty value reached through a key is reported at its key, which is where
// a reader looks for "this section". When the path does not exist (a
// missing key), Pos falls back to the deepest ancestor that does, so
// "required" problems point at the parent. A nil root gives 0, 0.
func Pos(root *yaml.Node, path ...any) (line, col int) {
	if root == nil {
		return 0, 0
	}
	n := deref(root)
	line, col = n.Line, n.Column
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line, col
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == p {
					line, col = k.Line, k.Column
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return line, col
			}
			if next.Kind == yaml.ScalarNode && !(isNull(next) && next.Value == "") {
				// A written scalar (also an alias to one): the value's own spot.
				line, col = next.Line, next.Column
			}
			n = deref(next)
		case int:
			if n.Kind != yaml.SequenceNode || p < 0 || p >= len(n.Content) {
				return line, col
			}
			line, col = n.Content[p].Line, n.Content[p].Column
			n = deref(n.Content[p])
		default:
			return line, col
		}
	}
	return line, col
}

// Lookup returns the node at path below root (see Pos for the path
// syntax), stepping through aliases, or nil when there is none. Callers use
// it to see what was actually written, e.g. which keys an item has, where
// the decoded Go value cannot tell "absent" from "empty".
func Lookup(root *yaml.Node, path ...any) *yaml.Node {
	if root == nil {
		return nil
	}
	n := deref(root)
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return nil
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == p {
					next = n.Content[i+1]
					break
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p >= 0 && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			return nil
		}
		n = deref(next)
	}
	return n
}

// Present reports whether path exists below root with a non-null value.
func Present(root *yaml.Node, path ...any) bool {
	n := Lookup(root, path...)
	return n != nil && !isNull(n)
}

// deref steps through document and alias nodes to the node that holds the
// content.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 16; i++ {
		switch {
		case n.Kind == yaml.DocumentNode && len(n.Content) > 0:
			n = n.Content[0]
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}
