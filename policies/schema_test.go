package policies

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The JSON Schema in testdata/policies/policy.schema.json lets editors
// complete and check policy files. These tests keep it honest: every
// field of the YAML structs is in the schema at the same place and vice
// versa, every object is closed (additionalProperties: false), and every
// good fixture only uses property names the schema knows.

type schema map[string]any

func loadSchema(t *testing.T) schema {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, "policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("policy.schema.json: %v", err)
	}
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v; want draft 2020-12", s["$schema"])
	}
	return s
}

// resolve follows $ref (only local "#/$defs/..." references are used).
func (root schema) resolve(t *testing.T, node schema, where string) schema {
	t.Helper()
	for i := 0; i < 8; i++ {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := root["$defs"].(map[string]any)
		target, found := defs[name].(map[string]any)
		if !ok || !found {
			t.Fatalf("%s: unresolvable $ref %q", where, ref)
		}
		node = target
	}
	t.Fatalf("%s: $ref loop", where)
	return nil
}

func types(node schema) []string {
	switch v := node["type"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// yamlFields lists a struct type's YAML keys and field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func TestSchemaMatchesStructs(t *testing.T) {
	root := loadSchema(t)
	var walk func(typ reflect.Type, node schema, where string)
	walk = func(typ reflect.Type, node schema, where string) {
		node = root.resolve(t, node, where)
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		want := map[reflect.Kind]string{
			reflect.Struct: "object", reflect.Map: "object", reflect.Slice: "array",
			reflect.String: "string", reflect.Int: "integer", reflect.Bool: "boolean",
		}[typ.Kind()]
		if want == "" {
			t.Errorf("%s: Go type %s has no schema mapping in this test", where, typ)
			return
		}
		if !slices.Contains(types(node), want) {
			t.Errorf("%s: schema type %v; the Go field is %s, want %q", where, node["type"], typ, want)
		}
		switch typ.Kind() {
		case reflect.Slice:
			items, ok := node["items"].(map[string]any)
			if !ok {
				t.Errorf("%s: array without items", where)
				return
			}
			walk(typ.Elem(), items, where+"[]")
		case reflect.Map:
			// A map is an object with free keys, whose additionalProperties
			// is the schema of the values, or with a fixed set of keys
			// (timeouts: one per kind), each of the value type.
			if props, ok := node["properties"].(map[string]any); ok && node["additionalProperties"] == false {
				for name, p := range props {
					if pm, ok := p.(map[string]any); ok {
						walk(typ.Elem(), pm, where+"."+name)
					}
				}
				return
			}
			values, ok := node["additionalProperties"].(map[string]any)
			if !ok {
				t.Errorf("%s: a map needs additionalProperties with the value schema", where)
				return
			}
			walk(typ.Elem(), values, where+".*")
		case reflect.Struct:
			if node["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties must be false, so typos are flagged in editors too", where)
			}
			props, _ := node["properties"].(map[string]any)
			fields := yamlFields(typ)
			for name := range props {
				if _, ok := fields[name]; !ok {
					t.Errorf("%s: schema property %q is not a field of %s", where, name, typ)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(fields)) {
				p, ok := props[name].(map[string]any)
				if !ok {
					t.Errorf("%s: field %q of %s is missing from the schema", where, name, typ)
					continue
				}
				walk(fields[name], p, where+"."+name)
			}
		}
	}
	walk(reflect.TypeFor[fileYAML](), root, "file")
}

// TestFixturesMatchSchema checks the property names of every good fixture
// and example against the schema: a light structural check, without a
// full JSON Schema validator.
func TestFixturesMatchSchema(t *testing.T) {
	root := loadSchema(t)
	var paths []string
	for _, pattern := range []string{"*.yaml", "good/*.yaml", "examples/*.yaml"} {
		more, _ := filepath.Glob(filepath.Join(fixtures, pattern))
		paths = append(paths, more...)
	}
	if len(paths) < 10 {
		t.Fatalf("only %d fixtures found", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			var walk func(n *yaml.Node, node schema, where string)
			walk = func(n *yaml.Node, node schema, where string) {
				node = root.resolve(t, node, where)
				for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
					if n.Kind == yaml.AliasNode {
						n = n.Alias
					} else {
						n = n.Content[0]
					}
				}
				switch n.Kind {
				case yaml.MappingNode:
					props, _ := node["properties"].(map[string]any)
					extra, _ := node["additionalProperties"].(map[string]any)
					for i := 0; i+1 < len(n.Content); i += 2 {
						k, v := n.Content[i].Value, n.Content[i+1]
						if k == "<<" {
							walk(v, node, where)
							continue
						}
						switch p, ok := props[k].(map[string]any); {
						case ok:
							walk(v, p, where+"."+k)
						case extra != nil:
							walk(v, extra, where+"."+k)
						default:
							t.Errorf("%s:%d: %s: key %q is not in the schema", filepath.Base(path), n.Content[i].Line, where, k)
						}
					}
				case yaml.SequenceNode:
					if items, ok := node["items"].(map[string]any); ok {
						for i, e := range n.Content {
							walk(e, items, where+"["+strconv.Itoa(i)+"]")
						}
					} else if !slices.Contains(types(node), "object") {
						t.Errorf("%s: a list where the schema has no items", where)
					} else {
						for _, e := range n.Content { // merge key list
							walk(e, node, where)
						}
					}
				}
			}
			walk(&doc, root, "file")
		})
	}
}
