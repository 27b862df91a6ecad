package metrics

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the metrics registered now")

// Dashboards and alerts are written against Baton's metric names, labels
// and help texts: a change to any of them must be deliberate. The golden
// file lists every baton_ metric of a Baton as `name{labels}: help`;
// `go test ./proxy/metrics -run TestMetricNamesAndHelpAreStable -update` rewrites it after a
// deliberate change.
func TestMetricNamesAndHelpAreStable(t *testing.T) {
	m := NewWith(func() float64 { return 0 }, func() float64 { return 0 })
	m.RegisterStore(func() (uint64, uint64, uint64, uint64) { return 0, 0, 0, 0 })
	m.RegisterOldestQueued(func() float64 { return 0 })
	got := describeAll(t, m)
	path := "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("new or changed: %s", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("gone or changed: %s", l)
		}
	}
	if t.Failed() {
		t.Log("if the change is deliberate: go test ./proxy/metrics -run TestMetricNamesAndHelpAreStable -update")
	}
}

var descRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), (?:unit: "[^"]*", )?constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// describeAll lists every baton_ metric m registers: the collectors held
// in its fields (vectors included, which have no samples until a child is
// used) and, through a gather, those registered without a field.
func describeAll(t *testing.T, m *Metrics) []string {
	t.Helper()
	seen := map[string]string{}
	ch := make(chan *prometheus.Desc, 16)
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Field(i)
			if !f.CanInterface() {
				continue
			}
			if f.Kind() == reflect.Struct {
				walk(f)
				continue
			}
			c, ok := f.Interface().(prometheus.Collector)
			if !ok || (f.Kind() == reflect.Interface || f.Kind() == reflect.Pointer) && f.IsNil() {
				continue
			}
			go func() { c.Describe(ch); close(ch) }()
			for d := range ch {
				name, line := descLine(t, d.String())
				seen[name] = line
			}
			ch = make(chan *prometheus.Desc, 16)
		}
	}
	walk(reflect.ValueOf(m).Elem())
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if _, ok := seen[f.GetName()]; ok || !strings.HasPrefix(f.GetName(), "baton_") {
			continue
		}
		var labels []string
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		seen[f.GetName()] = fmt.Sprintf("%s{%s}: %s", f.GetName(), strings.Join(labels, ","), f.GetHelp())
	}
	var out []string
	for name, line := range seen {
		if strings.HasPrefix(name, "baton_") {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

func descLine(t *testing.T, s string) (string, string) {
	t.Helper()
	p := descRE.FindStringSubmatch(s)
	if p == nil {
		t.Fatalf("unexpected descriptor %s", s)
	}
	name, err1 := strconv.Unquote(p[1])
	help, err2 := strconv.Unquote(p[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("descriptor %s: %v %v", s, err1, err2)
	}
	var labels []string
	for _, l := range strings.Split(p[3], ",") {
		if k, _, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			labels = append(labels, k)
		}
	}
	for _, l := range strings.Split(p[4], ",") {
		if l = strings.TrimSpace(l); l != "" {
			labels = append(labels, strings.Trim(l, `"`))
		}
	}
	slices.Sort(labels)
	return name, fmt.Sprintf("%s{%s}: %s", name, strings.Join(labels, ","), help)
}
