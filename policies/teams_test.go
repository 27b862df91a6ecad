package policies

import (
	"strings"
	"testing"
	"time"
)

const teamsPolicy = `version: 1
teams:
  berlin:
    timezone: Europe/Berlin
    hours:
      mon: ["09:00-17:00"]
      sun: ["01:00-04:00"]     # spans the spring-forward gap
  new-york:
    timezone: America/New_York
    hours:
      sun: ["01:30-02:00"]     # inside the hour that repeats in the fall
      mon: ["00:00-24:00"]
  auckland:
    timezone: Pacific/Auckland
    hours:
      mon: ["09:00-10:00"]
  sydney:
    timezone: Australia/Sydney
    hours:
      thu: ["09:00-17:00"]
      fri: ["09:00-17:00"]
    holidays: ["2026-12-25"]
    closures:
      - {from: "2026-12-24 12:00", to: "2026-12-24 13:00"}
      - {from: "2026-12-31T00:00:00Z", to: "2026-12-31T01:00:00Z"}
rules:
  - name: r
    when: {keywords: [x]}
    do: [{send_text: x}]
`

func TestTeamOpen(t *testing.T) {
	set := compileFiles(t, nil, teamsPolicy)
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		team string
		at   string // UTC
		open bool
		why  string
	}{
		{"berlin", "2026-06-01T06:59:00Z", false, "08:59 CEST Monday"},
		{"berlin", "2026-06-01T07:00:00Z", true, "09:00 CEST Monday"},
		{"berlin", "2026-06-01T14:59:59Z", true, "16:59:59 CEST"},
		{"berlin", "2026-06-01T15:00:00Z", false, "17:00 CEST: the end is exclusive"},
		{"berlin", "2026-01-05T08:00:00Z", true, "09:00 CET Monday in winter"},
		{"berlin", "2026-01-05T07:59:00Z", false, "08:59 CET"},
		{"berlin", "2026-06-02T10:00:00Z", false, "Tuesday: not listed, closed"},
		// 2026-03-29: Berlin springs forward from 02:00 CET to 03:00 CEST.
		{"berlin", "2026-03-28T23:59:00Z", false, "00:59 CET Sunday"},
		{"berlin", "2026-03-29T00:30:00Z", true, "01:30 CET, before the change"},
		{"berlin", "2026-03-29T01:00:00Z", true, "03:00 CEST, right after it"},
		{"berlin", "2026-03-29T01:59:00Z", true, "03:59 CEST"},
		{"berlin", "2026-03-29T02:00:00Z", false, "04:00 CEST: wall-clock hours, so only two real hours that day"},
		// 2026-11-01: New York falls back from 02:00 EDT to 01:00 EST.
		{"new-york", "2026-11-01T05:45:00Z", true, "01:45 EDT"},
		{"new-york", "2026-11-01T06:45:00Z", true, "01:45 EST, the repeated hour"},
		{"new-york", "2026-11-01T07:15:00Z", false, "02:15 EST"},
		{"new-york", "2026-11-02T04:59:00Z", false, "23:59 EST Sunday"},
		{"new-york", "2026-11-02T05:00:00Z", true, "00:00 EST Monday, 24:00 allowed as an end"},
		// Auckland is a day ahead: Monday 09:00 NZST is Sunday in UTC.
		{"auckland", "2026-06-07T21:30:00Z", true, "Monday 09:30 NZST"},
		{"auckland", "2026-06-08T21:30:00Z", false, "Tuesday 09:30 NZST"},
		// Sydney: Christmas is a holiday in Sydney's calendar, not UTC's.
		{"sydney", "2026-12-24T00:00:00Z", true, "Thursday 11:00 AEDT"},
		{"sydney", "2026-12-24T01:30:00Z", false, "Thursday 12:30 AEDT: local closure"},
		{"sydney", "2026-12-24T22:00:00Z", false, "Friday 25th 09:00 AEDT: holiday"},
		{"sydney", "2026-12-31T00:30:00Z", false, "Thursday 11:30 AEDT: RFC 3339 closure"},
		{"sydney", "2026-12-31T01:00:00Z", true, "12:00 AEDT: the closure has ended"},
		{"sydney", "2027-01-01T00:00:00Z", true, "Friday 11:00 AEDT: New Year is not listed"},
	}
	for _, tt := range tests {
		t.Run(tt.team+" "+tt.why, func(t *testing.T) {
			open, known := set.TeamOpen(tt.team, utc(tt.at))
			if !known || open != tt.open {
				t.Errorf("TeamOpen(%s, %s) = %t, %t; want %t", tt.team, tt.at, open, known, tt.open)
			}
			// The time's own zone does not matter, only the instant.
			if got := set.Team(tt.team).Open(utc(tt.at).In(time.FixedZone("X", -11*3600))); got != tt.open {
				t.Errorf("Open in another zone = %t", got)
			}
		})
	}
	if (*Team)(nil).Open(time.Now()) {
		t.Error("a nil team is open")
	}
	if set.Team("berlin").Name() != "berlin" {
		t.Error("Name")
	}
}

func TestTeamsAcrossFiles(t *testing.T) {
	teams := "version: 1\nteams:\n  support:\n    timezone: UTC\n    hours: {mon: [\"09:00-17:00\"]}\n"
	rules := "version: 1\nrules:\n  - name: r\n    when: {open: support, keywords: [x]}\n    do: [{send_text: x}]\n"
	// A rule may use a team from a later file.
	set := compileFiles(t, nil, rules, teams)
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: "x", Now: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)}); d.Rule != "r" {
		t.Errorf("rule %q; want r", d.Rule)
	}
	_, err := Compile([]File{{Name: "a.yaml", Data: []byte(teams)}, {Name: "b.yaml", Data: []byte(teams)}}, nil)
	want := `b.yaml:3:3: teams.support: duplicate team name "support" (first defined at a.yaml:3:3)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]minuteRange{
		"09:00-17:00": {540, 1020}, "9:30-10:00": {570, 600}, "00:00-24:00": {0, 1440}, " 08:00 - 09:15 ": {480, 555},
	} {
		if got, msg := parseRange(in); msg != "" || got != want {
			t.Errorf("parseRange(%q) = %v, %q; want %v", in, got, msg, want)
		}
	}
	for _, in := range []string{"", "9-17", "09:00", "17:00-09:00", "09:00-09:00", "24:00-24:00", "09:60-10:00", "25:00-26:00", "+9:00-10:00", "09:00-24:01", "a:bc-10:00"} {
		if _, msg := parseRange(in); msg == "" {
			t.Errorf("parseRange(%q) accepted", in)
		}
	}
}

func TestTeamsMergeKeys(t *testing.T) {
	src := `version: 1
x-hours: &office {timezone: UTC, hours: {mon: ["09:00-17:00"]}}
teams:
  <<: {merged: *office, support: {timezone: Asia/Tokyo, hours: {tue: ["09:00-10:00"]}}}
  support: *office
rules:
  - {name: r, when: {open: merged, keywords: [x]}, do: [{send_text: x}]}
`
	_, err := Compile([]File{{Name: "m.yaml", Data: []byte(src)}}, nil)
	// x-hours is not a key of the format; the teams themselves are fine.
	if err == nil || !strings.Contains(err.Error(), `unknown key "x-hours"`) || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("err = %v", err)
	}
	src = strings.Replace(src, "x-hours: &office", "teams-anchor-holder: &office", 1)
	src = strings.Replace(src, "teams-anchor-holder: &office {timezone: UTC, hours: {mon: [\"09:00-17:00\"]}}\n", "", 1)
	src = strings.Replace(src, "teams:\n", "teams:\n  office: &office {timezone: UTC, hours: {mon: [\"09:00-17:00\"]}}\n", 1)
	set := compileFiles(t, nil, src)
	if z := set.Team("support").loc.String(); z != "UTC" {
		t.Errorf("support is in %s; the written key must win over the merged one", z)
	}
	if open, known := set.TeamOpen("merged", time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)); !open || !known {
		t.Errorf("merged team: open %t known %t", open, known)
	}
}
