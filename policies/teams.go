package policies

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// The zone database is embedded so that `timezone:` works the same on
	// a slim container without /usr/share/zoneinfo as on a laptop; the
	// system's copy still wins when there is one.
	_ "time/tzdata"

	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// Team is one team's business hours, from the `teams:` section of a
// policy file. It is immutable; Open is a pure function of the time.
type Team struct {
	name string
	loc  *time.Location
	// week holds the opening ranges of each day, indexed by
	// time.Weekday, in minutes after local midnight.
	week     [7][]minuteRange
	holidays []int     // yyyymmdd, sorted
	closures []closure // absolute instants, [from, to)

	// As written, for Summary.
	zone     string
	hours    [7][]string
	holidayS []string
	closureS []string
}

type minuteRange struct{ from, to int } // [from, to)

type closure struct{ from, to time.Time }

// Name returns the team's name.
func (t *Team) Name() string { return t.name }

// Open reports whether the team is open at the given instant: inside one
// of the day's ranges in the team's time zone (wall-clock time, so a range
// keeps its local hours across a daylight-saving change), on a day that
// is not a holiday, and outside every closure.
func (t *Team) Open(at time.Time) bool {
	if t == nil {
		return false
	}
	for _, c := range t.closures {
		if !at.Before(c.from) && at.Before(c.to) {
			return false
		}
	}
	local := at.In(t.loc)
	y, m, d := local.Date()
	if _, holiday := slices.BinarySearch(t.holidays, y*10000+int(m)*100+d); holiday {
		return false
	}
	h, mi, _ := local.Clock()
	now := h*60 + mi
	for _, r := range t.week[local.Weekday()] {
		if r.from <= now && now < r.to {
			return true
		}
	}
	return false
}

// teamYAML is one entry of the top-level `teams:` mapping.
type teamYAML struct {
	// Timezone is an IANA zone name such as Europe/Berlin; required.
	Timezone string    `yaml:"timezone"`
	Hours    hoursYAML `yaml:"hours"`
	// Holidays are whole days closed, "2026-12-25", in the team's zone.
	Holidays []string `yaml:"holidays"`
	// Closures are one-off closed periods.
	Closures []closureYAML `yaml:"closures"`
}

// hoursYAML has one field per day rather than a map so that a misspelt
// day is an unknown key like any other typo.
type hoursYAML struct {
	Mon []string `yaml:"mon"`
	Tue []string `yaml:"tue"`
	Wed []string `yaml:"wed"`
	Thu []string `yaml:"thu"`
	Fri []string `yaml:"fri"`
	Sat []string `yaml:"sat"`
	Sun []string `yaml:"sun"`
}

type closureYAML struct {
	From string `yaml:"from"` // RFC 3339, or "2006-01-02 15:04" in the team's zone
	To   string `yaml:"to"`
}

var days = [7]struct {
	key string
	day time.Weekday
}{
	{"mon", time.Monday}, {"tue", time.Tuesday}, {"wed", time.Wednesday}, {"thu", time.Thursday},
	{"fri", time.Friday}, {"sat", time.Saturday}, {"sun", time.Sunday},
}

const localLayout = "2006-01-02 15:04"

// compileTeams compiles the `teams:` section of the current file, in the
// order written. Teams merged in with "<<: *anchor" come after the ones
// written out, which win over them as YAML merge keys do; their problems
// are reported at the teams key, as they have no path of their own.
func (c *compiler) compileTeams() {
	n := yamlfile.Lookup(c.root, "teams")
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	seen := make(map[string]bool)
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || seen[k.Value] {
			continue // reported by yamlfile
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged = append(merged, v)
			continue
		}
		seen[k.Value] = true
		c.decodeTeam(k.Value, v)
	}
	for len(merged) > 0 {
		m := merged[0]
		merged = merged[1:]
		for m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		switch m.Kind {
		case yaml.SequenceNode:
			merged = append(merged, m.Content...)
		case yaml.MappingNode:
			for i := 0; i+1 < len(m.Content); i += 2 {
				if k := m.Content[i]; k.Kind == yaml.ScalarNode && !seen[k.Value] && k.Value != "<<" {
					seen[k.Value] = true
					c.decodeTeam(k.Value, m.Content[i+1])
				}
			}
		}
	}
}

func (c *compiler) decodeTeam(name string, v *yaml.Node) {
	var ty teamYAML
	_ = v.Decode(&ty) // errors reported by yamlfile.Decode
	c.compileTeam(name, &ty, v, []any{"teams", name})
}

// compileTeam compiles one team. Lists are read from the team's node tn
// (see yamlfile.Len), problems reported at path below the file's root.
func (c *compiler) compileTeam(name string, ty *teamYAML, tn *yaml.Node, path []any) {
	t := &Team{name: name, zone: ty.Timezone}
	ok := true
	if !nameRE.MatchString(name) || len(name) > maxNameLen {
		c.problem(path, "team name %q must be lowercase letters, digits, '-' and '_', starting with a letter or digit, at most %d characters", name, maxNameLen)
		ok = false
	}
	line, col := yamlfile.Pos(c.root, path...)
	if first, dup := c.teamAt[name]; dup {
		c.problem(path, "duplicate team name %q (first defined at %s)", name, first)
		ok = false
	} else {
		c.teamAt[name] = fmt.Sprintf("%s:%d:%d", c.file, line, col)
	}

	zp := at(path, "timezone")
	switch tz := ty.Timezone; {
	case tz == "":
		c.problem(zp, "required: the team's IANA time zone, such as Europe/Berlin or UTC")
		ok = false
	case strings.EqualFold(tz, "local"):
		c.problem(zp, `time zone "Local" depends on the machine Baton runs on; name the zone, such as Europe/Berlin`)
		ok = false
	default:
		loc, err := time.LoadLocation(tz)
		if err != nil {
			c.problem(zp, "unknown time zone %q: use an IANA name such as Europe/Berlin, America/New_York or UTC", tz)
			ok = false
		}
		t.loc = loc
	}
	// Without a zone the dates below are still checked for syntax.
	loc := t.loc
	if loc == nil {
		loc = time.UTC
	}

	hp := at(path, "hours")
	written := 0
	for _, d := range days {
		dp := at(hp, d.key)
		written += yamlfile.Len(tn, "hours", d.key)
		idx, vals := scalarsBelow(tn, "hours", d.key)
		for j, v := range vals {
			r, msg := parseRange(v)
			if msg != "" {
				c.problem(at(dp, idx[j]), "%s", msg)
				ok = false
				continue
			}
			for _, other := range t.week[d.day] {
				if r.from < other.to && other.from < r.to {
					c.problem(at(dp, idx[j]), "%q overlaps another range of the same day", v)
					ok = false
				}
			}
			t.week[d.day] = append(t.week[d.day], r)
			t.hours[d.day] = append(t.hours[d.day], v)
		}
	}
	if written == 0 && !c.rep.Reported(hp...) {
		c.problem(hp, "required: the team's weekly opening hours, such as mon: [\"09:00-17:00\"] (a day left out is closed)")
		ok = false
	}

	idx, vals := scalarsBelow(tn, "holidays")
	for j, v := range vals {
		day, err := time.Parse(time.DateOnly, v)
		if err != nil {
			c.problem(at(path, "holidays", idx[j]), "holiday %q is not a date like 2026-12-25", v)
			ok = false
			continue
		}
		t.holidays = append(t.holidays, day.Year()*10000+int(day.Month())*100+day.Day())
		t.holidayS = append(t.holidayS, v)
	}
	slices.Sort(t.holidays)
	t.holidays = slices.Compact(t.holidays)

	for i := range yamlfile.Len(tn, "closures") {
		cp := at(path, "closures", i)
		var cy closureYAML
		if n := yamlfile.Lookup(tn, "closures", i); n == nil || n.Decode(&cy) != nil {
			continue // reported by yamlfile
		}
		from, okFrom := c.instant(cy.From, loc, at(cp, "from"))
		to, okTo := c.instant(cy.To, loc, at(cp, "to"))
		if !okFrom || !okTo {
			ok = false
			continue
		}
		if !to.After(from) {
			c.problem(at(cp, "to"), "closure ends at or before it starts (%s)", cy.From)
			ok = false
			continue
		}
		t.closures = append(t.closures, closure{from, to})
		t.closureS = append(t.closureS, cy.From+" to "+cy.To)
	}
	if ok {
		c.set.teams[name] = t
	}
}

// instant parses a closure bound: RFC 3339, or local wall-clock time in
// the team's zone.
func (c *compiler) instant(v string, loc *time.Location, path []any) (time.Time, bool) {
	if v == "" {
		c.problem(path, `required: a time such as "2026-12-31 12:00" (in the team's zone) or RFC 3339`)
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation(localLayout, v, loc); err == nil {
		return t, true
	}
	c.problem(path, `%q is not a time such as "2026-12-31 12:00" (in the team's zone) or "2026-12-31T12:00:00+01:00"`, v)
	return time.Time{}, false
}

// parseRange parses "09:00-17:00". The end may be 24:00; a range may not
// run past midnight (split it over two days instead).
func parseRange(v string) (minuteRange, string) {
	a, b, found := strings.Cut(v, "-")
	if !found {
		return minuteRange{}, fmt.Sprintf("opening hours %q must look like \"09:00-17:00\"", v)
	}
	from, okA := parseClock(strings.TrimSpace(a))
	to, okB := parseClock(strings.TrimSpace(b))
	switch {
	case !okA || !okB:
		return minuteRange{}, fmt.Sprintf("opening hours %q must look like \"09:00-17:00\" (24-hour clock, the end may be 24:00)", v)
	case from >= 24*60:
		return minuteRange{}, fmt.Sprintf("opening hours %q start at 24:00; use 00:00 of the next day", v)
	case to <= from:
		return minuteRange{}, fmt.Sprintf("opening hours %q end before they start; a range past midnight is two ranges, one on each day", v)
	}
	return minuteRange{from, to}, ""
}

// parseClock parses "HH:MM" into minutes after midnight, allowing 24:00.
func parseClock(s string) (int, bool) {
	h, m, found := strings.Cut(s, ":")
	if !found || len(h) < 1 || len(h) > 2 || len(m) != 2 || !digits(h) || !digits(m) {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, false
	}
	return hh*60 + mm, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
