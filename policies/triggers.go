package policies

import (
	"fmt"
	"slices"
	"strings"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// attachmentTypes are the attachment types Messenger sends (see the
// protocol notes, §4.3), plus "location" from older clients and "any".
var attachmentTypes = []string{
	"image", "video", "audio", "file", "sticker", "location", "fallback", "template",
	"reel", "ig_reel", "post", "ig_post", "appointment_booking", "any",
}

// payloads reads a list of exact payloads (postbacks or quick replies) and
// indexes them for rule ruleIdx.
func (c *compiler) payloads(path []any, kind string, index map[string][]triggerRef, ruleIdx int, written *int) []string {
	what := strings.ReplaceAll(kind, "_", "-")
	idx, vals := c.scalars(path)
	*written += len(vals)
	var out []string
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "%s payload must not be empty", what)
			continue
		}
		out = append(out, v)
		index[v] = append(index[v], triggerRef{rule: ruleIdx, trigger: fmt.Sprintf("%s %q", kind, v)})
	}
	return out
}

// compileTriggers compiles the triggers and indexes them. It reports
// whether the rule has triggers on the user's own events (as opposed to
// echoes, requests, control coming back and the bot recovering).
func (c *compiler) compileTriggers(r *rule, w *whenYAML, when []any, ruleIdx int) (user bool) {
	written := 0 // triggers written, valid or not

	echo := yamlfile.Len(c.root, at(when, "echo_from")...) > 0
	idx, names := c.scalars(at(when, "echo_from"))
	written += len(names)
	for j, name := range names {
		if name == BotApp {
			r.echoFrom = append(r.echoFrom, literal{name: BotApp, trigger: `echo_from "bot"`})
			continue
		}
		if id, ok := c.appID(name, at(when, "echo_from", idx[j]), `or "bot" for our own app`); ok {
			r.echoFrom = append(r.echoFrom, literal{value: id, name: name, trigger: fmt.Sprintf("echo_from %q", name)})
		}
	}
	prefix := ""
	if echo {
		// In an echo rule the text triggers look at the echo; say so in
		// the trigger, which shows up in logs.
		prefix = "echo "
	}

	idx, kws := c.scalars(at(when, "keywords"))
	written += len(kws)
	for j, kw := range kws {
		ws := words(kw)
		if len(ws) == 0 {
			c.problem(at(when, "keywords", idx[j]), "keyword %q has no letters or digits to match", kw)
			continue
		}
		p := phrase{text: kw, words: ws, trigger: fmt.Sprintf("%skeyword %q", prefix, kw)}
		r.keywords = append(r.keywords, p)
		if !echo {
			c.set.keywords[ws[0]] = append(c.set.keywords[ws[0]], phraseRef{rule: ruleIdx, rest: ws[1:], trigger: p.trigger})
		}
	}

	idx, all := c.scalars(at(when, "all_keywords"))
	if len(all) > 0 {
		written++
	}
	for j, kw := range all {
		ws := words(kw)
		if len(ws) == 0 {
			c.problem(at(when, "all_keywords", idx[j]), "keyword %q has no letters or digits to match", kw)
			continue
		}
		r.allKeywords = append(r.allKeywords, kw)
		r.allWords = append(r.allWords, ws)
	}
	if len(r.allWords) > 0 && len(r.allWords) == len(all) {
		r.allTrigger = fmt.Sprintf("%sall_keywords %s", prefix, quoteAll(r.allKeywords))
		if !echo {
			first := r.allWords[0]
			c.set.keywords[first[0]] = append(c.set.keywords[first[0]], phraseRef{
				rule: ruleIdx, rest: first[1:], others: r.allWords[1:], trigger: r.allTrigger,
			})
		}
	} else {
		r.allKeywords, r.allWords = nil, nil
	}

	r.regex = c.patterns(at(when, "regex"), prefix+"regex", &written)
	for _, p := range r.regex {
		for _, n := range p.needs {
			c.set.needLower = c.set.needLower || n.fold
		}
	}

	r.postbacks = c.payloads(at(when, "postbacks"), "postback", c.set.postbacks, ruleIdx, &written)
	r.pbPrefixes = c.prefixes(at(when, "postback_prefixes"), "postback_prefix", &written)
	r.pbRegex = c.patterns(at(when, "postback_regex"), "postback_regex", &written)
	r.quickReplies = c.payloads(at(when, "quick_replies"), "quick_reply", c.set.quickReplies, ruleIdx, &written)
	r.qrPrefixes = c.prefixes(at(when, "quick_reply_prefixes"), "quick_reply_prefix", &written)
	r.qrRegex = c.patterns(at(when, "quick_reply_regex"), "quick_reply_regex", &written)

	if c.written(when, "referral") {
		written++
		r.referral = c.referral(at(when, "referral"), "referral", true)
	}
	if c.written(when, "optin") {
		written++
		r.optin = c.referral(at(when, "optin"), "optin", false)
	}

	idx, types := c.scalars(at(when, "attachments"))
	written += len(types)
	for j, t := range types {
		lt := strings.ToLower(t)
		if !slices.Contains(attachmentTypes, lt) {
			c.problem(at(when, "attachments", idx[j]), "unknown attachment type %q (expected %s)", t, strings.Join(attachmentTypes, ", "))
			continue
		}
		r.attachments = append(r.attachments, literal{value: lt, name: lt, trigger: fmt.Sprintf("%sattachment %q", prefix, lt)})
	}

	idx, names = c.scalars(at(when, "request_from"))
	written += len(names)
	for j, name := range names {
		if id, ok := c.appID(name, at(when, "request_from", idx[j]), ""); ok {
			r.requestFrom = append(r.requestFrom, literal{value: id, name: name, trigger: fmt.Sprintf("request_from %q", name)})
		}
	}
	if w.ControlReturned {
		written++
		r.returned = true
	}
	if w.BotRecovered {
		written++
		r.recovered = true
	}

	if written == 0 {
		c.problem(when, "needs at least one trigger (%s)", triggerKeys)
	}
	if echo {
		// An echo is the Page's own message: it has no payload, referral
		// or opt-in, and a user trigger beside echo_from would be
		// ambiguous (does "done" mean the user's or the agent's?).
		for _, k := range []string{"postbacks", "postback_prefixes", "postback_regex", "quick_replies",
			"quick_reply_prefixes", "quick_reply_regex", "referral", "optin"} {
			if c.written(when, k) {
				c.problem(at(when, k), "%s cannot be combined with echo_from: an echo rule only looks at the Page's own messages "+
					"(its keywords, regex and attachments match the echo); put the user's triggers in a separate rule", k)
			}
		}
	}

	user = !echo && (len(kws) > 0 || len(all) > 0 || len(r.regex) > 0 || len(r.postbacks) > 0 || len(r.quickReplies) > 0 ||
		len(r.pbPrefixes) > 0 || len(r.pbRegex) > 0 || len(r.qrPrefixes) > 0 || len(r.qrRegex) > 0 ||
		r.referral != nil || r.optin != nil || len(types) > 0)
	switch {
	case echo:
		c.set.echoRules = append(c.set.echoRules, ruleIdx)
	default:
		if len(r.regex) > 0 || len(r.attachments) > 0 {
			c.set.textScan = append(c.set.textScan, ruleIdx)
		}
		if len(r.pbPrefixes) > 0 || len(r.pbRegex) > 0 || len(r.qrPrefixes) > 0 || len(r.qrRegex) > 0 ||
			r.referral != nil || r.optin != nil {
			c.set.payloadScan = append(c.set.payloadScan, ruleIdx)
		}
	}
	if len(r.requestFrom) > 0 {
		c.set.requestRules = append(c.set.requestRules, ruleIdx)
	}
	if r.returned {
		c.set.returnRules = append(c.set.returnRules, ruleIdx)
	}
	if r.recovered {
		c.set.recoverRules = append(c.set.recoverRules, ruleIdx)
	}
	if len(r.keywords) > 0 || len(r.allWords) > 0 {
		c.set.needWords = true
	}
	return user
}

// appID resolves an app name, reporting an unknown one.
func (c *compiler) appID(name string, path []any, also string) (string, bool) {
	id, ok := c.apps[name]
	if ok && name != DefaultApp {
		return id, true
	}
	list := c.appList()
	if also != "" {
		list += "; " + also
	}
	if name == "" {
		c.problem(path, "app name must not be empty (%s)", list)
	} else {
		c.problem(path, "unknown app %q (%s)", name, list)
	}
	return "", false
}

func (c *compiler) prefixes(path []any, kind string, written *int) []literal {
	var out []literal
	idx, vals := c.scalars(path)
	*written += len(vals)
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "prefix must not be empty (it would match every payload)")
			continue
		}
		out = append(out, literal{value: v, trigger: fmt.Sprintf("%s %q", kind, v)})
	}
	return out
}

// patterns compiles a list of RE2 regular expressions, once.
func (c *compiler) patterns(path []any, kind string, written *int) []pattern {
	var out []pattern
	idx, vals := c.scalars(path)
	*written += len(vals)
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "regular expression must not be empty")
			continue
		}
		re, needs, err := compilePattern(v)
		if err != nil {
			c.problem(at(path, idx[j]), "invalid regular expression %q: %s (the syntax is RE2, see https://golang.org/s/re2syntax)",
				v, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			continue
		}
		out = append(out, pattern{re: re, trigger: fmt.Sprintf("%s %q", kind, v), universal: universal(v), needs: needs})
	}
	return out
}

// referral compiles a referral or optin trigger. Every list given must be
// non-empty; one left out matches anything.
func (c *compiler) referral(path []any, kind string, full bool) *referral {
	f := &referral{}
	list := func(key string, check func(string) string) []string {
		if !c.written(path, key) {
			return nil
		}
		out := []string{}
		idx, vals := c.scalars(at(path, key))
		if len(vals) == 0 && !c.rep.Reported(at(path, key)...) {
			c.problem(at(path, key), "an empty list never matches; leave %s out to match any", key)
		}
		for j, v := range vals {
			if msg := check(v); msg != "" {
				c.problem(at(path, key, idx[j]), "%s", msg)
				continue
			}
			out = append(out, v)
		}
		return out
	}
	f.refs = list("refs", func(v string) string {
		if v == "" {
			return "ref must not be empty"
		}
		return ""
	})
	var parts []string
	if f.refs != nil {
		parts = append(parts, "refs="+quoteAll(f.refs))
	}
	if full {
		f.sources = list("sources", func(v string) string {
			if !sourceRE.MatchString(v) {
				return fmt.Sprintf("referral source %q must be a word such as SHORTLINK or ADS", v)
			}
			return ""
		})
		f.adIDs = list("ad_ids", func(v string) string {
			if !digits(v) {
				return fmt.Sprintf("ad id %q must be digits", v)
			}
			return ""
		})
		if f.sources != nil {
			parts = append(parts, "sources="+quoteAll(f.sources))
		}
		if f.adIDs != nil {
			parts = append(parts, "ad_ids="+quoteAll(f.adIDs))
		}
	}
	f.trigger = strings.Join(append([]string{kind}, parts...), " ")
	return f
}
