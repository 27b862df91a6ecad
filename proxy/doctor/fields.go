package doctor

import (
	"fmt"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"
)

// baseFields are the webhook fields Baton needs whatever its policies say:
// the user's messages and postbacks, the echoes that show who answered,
// the handover events, and the standby channel that keeps it seeing the
// thread while another app owns it.
var baseFields = []string{"messages", "messaging_postbacks", "message_echoes", "messaging_handovers", "standby"}

// fieldAliases are the other spellings Meta uses for some fields
// (reference, pitfall 15): a subscription under either one counts.
var fieldAliases = map[string]string{
	"messaging_handovers": "messaging_handover",
	"messaging_referrals": "messaging_referral",
}

// policyNeeds is what the policy files use that the set-up must allow.
type policyNeeds struct {
	referrals bool // a rule matches referral (m.me links, ads)
	optins    bool // a rule matches optin
	feedback  bool // an action sends the feedback template: its answers come on messaging_feedback
	take      bool // an action or timeout takes control
}

// fields returns the webhook fields Baton's app needs on every page.
func (n policyNeeds) fields() []string {
	out := slices.Clone(baseFields)
	if n.referrals {
		out = append(out, "messaging_referrals")
	}
	if n.optins {
		out = append(out, "messaging_optins")
	}
	if n.feedback {
		out = append(out, "messaging_feedback")
	}
	return out
}

// readNeeds scans the policy files for what they use. It reads the YAML
// keys only, roughly: referral or optin under a when, send_feedback and
// take anywhere. The files' validity is `baton check`'s job (and serve
// refuses invalid ones), so a file is only required to be YAML here.
func readNeeds(paths []string) (policyNeeds, error) {
	var n policyNeeds
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return n, fmt.Errorf("reading policy file: %w", err)
		}
		if err := scanPolicy(data, &n); err != nil {
			return n, fmt.Errorf("policy file %s: %w", p, err)
		}
	}
	return n, nil
}

// scanPolicy adds what one policy file uses to n.
func scanPolicy(data []byte, n *policyNeeds) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	walk(&root, "", n)
	return nil
}

// walk visits mapping keys, knowing the key its mapping is the value of.
// Aliases are not followed: what they point to is visited where it is
// defined, and only keys matter.
func walk(node *yaml.Node, parentKey string, n *policyNeeds) {
	switch node.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range node.Content {
			walk(c, parentKey, n)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			key := node.Content[i].Value
			switch {
			case parentKey == "when" && key == "referral":
				n.referrals = true
			case parentKey == "when" && key == "optin":
				n.optins = true
			case key == "send_feedback":
				n.feedback = true
			case key == "take":
				n.take = true
			}
			walk(node.Content[i+1], key, n)
		}
	}
}

// missingFields returns the needed fields that have is without, under
// either spelling.
func missingFields(need, have []string) []string {
	var out []string
	for _, f := range need {
		if slices.Contains(have, f) || (fieldAliases[f] != "" && slices.Contains(have, fieldAliases[f])) {
			continue
		}
		out = append(out, f)
	}
	return out
}
