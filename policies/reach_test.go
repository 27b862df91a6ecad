package policies

import "testing"

func TestUniversal(t *testing.T) {
	for expr, want := range map[string]bool{
		".": true, ".*": true, "(?s).": true, ".+": true, "x*": true, "": true, "(?i).": true,
		"a|.": true, "(.)": true, ".?x": false, "(?:)": true,
		"a": false, "^$": false, "^.": false, "\\w": false, "..": false, ".x": false, ".{2}": false,
		"\\b": false, "[^a]": false, "(": false,
	} {
		if got := universal(expr); got != want {
			t.Errorf("universal(%q) = %t; want %t", expr, got, want)
		}
	}
}

func TestReachability(t *testing.T) {
	ok := []string{
		// A later rule with a narrower owner condition on the earlier one's
		// side is fine: the earlier one needs the bot, the later fires for
		// others too.
		"version: 1\nrules:\n- {name: a, when: {keywords: [x]}, do: [{take: {}}]}\n- {name: b, when: {owner: any, keywords: [x]}, do: [{take: {}}]}\n",
		// continue lets later rules fire.
		"version: 1\nrules:\n- {name: a, when: {keywords: [x]}, do: [{tag: t}], continue: true}\n- {name: b, when: {keywords: [x]}, do: [{take: {}}]}\n",
		// A page-specific file does not shadow the default files.
		"version: 1\npages: [\"1\"]\nrules:\n- {name: a, when: {regex: [.]}, do: [{tag: t}]}\n",
		// Conditions the later rule does not have.
		"version: 1\nrules:\n- {name: a, when: {tags: [vip], keywords: [x]}, do: [{tag: t}]}\n- {name: b, when: {keywords: [x]}, do: [{take: {}}]}\n",
		// Different kinds of event.
		"version: 1\nrules:\n- {name: a, when: {regex: [.]}, do: [{tag: t}]}\n- {name: b, when: {postbacks: [X], attachments: [image], control_returned: true}, do: [{take: {}}]}\n",
		// An echo rule with text triggers does not cover all echoes.
		"version: 1\nrules:\n- {name: a, when: {echo_from: [inbox], keywords: [done]}, do: [{tag: t}]}\n- {name: b, when: {echo_from: [inbox]}, do: [{take: {}}]}\n",
	}
	for i, src := range ok {
		if _, err := Compile([]File{{Name: "p.yaml", Data: []byte(src)}}, testApps); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	dead := []string{
		"version: 1\nrules:\n- {name: a, when: {regex: [.]}, do: [{tag: t}]}\n- {name: b, when: {keywords: [x], all_keywords: [y, z]}, do: [{take: {}}]}\n",
		"version: 1\nrules:\n- {name: a, when: {owner: any, keywords: [x]}, do: [{tag: t}]}\n- {name: b, when: {owner: inbox, tags: [t], pages: [\"1\"], keywords: [x y]}, do: [{take: {}}]}\n",
		"version: 1\nrules:\n- {name: a, when: {referral: }, do: [{tag: t}]}\n- {name: b, when: {referral: {refs: [r]}}, do: [{take: {}}]}\n",
		"version: 1\nrules:\n- {name: a, when: {echo_from: [inbox, bot]}, do: [{tag: t}]}\n- {name: b, when: {echo_from: [bot], regex: [x]}, do: [{take: {}}]}\n",
		"version: 1\nrules:\n- {name: a, when: {request_from: [inbox], control_returned: true}, do: [{tag: t}]}\n- {name: b, when: {control_returned: true}, do: [{take: {}}]}\n",
		"version: 1\nrules:\n- {name: a, when: {quick_reply_regex: ['^A']}, do: [{tag: t}]}\n- {name: b, when: {quick_replies: [AB]}, do: [{take: {}}]}\n",
	}
	for i, src := range dead {
		_, err := Compile([]File{{Name: "p.yaml", Data: []byte(src)}}, testApps)
		if err == nil {
			t.Errorf("dead case %d compiled", i)
		}
	}
	// Across files: the default scope continues from one file to the next.
	a := "version: 1\nrules:\n- {name: a, when: {keywords: [x]}, do: [{tag: t}]}\n"
	b := "version: 1\nrules:\n- {name: b, when: {keywords: [x]}, do: [{take: {}}]}\n"
	_, err := Compile([]File{{Name: "a.yaml", Data: []byte(a)}, {Name: "b.yaml", Data: []byte(b)}}, nil)
	if err == nil {
		t.Error("a rule shadowed by another file's rule compiled")
	}
}
