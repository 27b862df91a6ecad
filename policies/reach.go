package policies

import (
	"regexp/syntax"
	"slices"
	"strings"
)

// Rules that can never fire are reported at load time: a rule is dead
// when an earlier rule without `continue: true`, applying to every page
// the later rule applies to, matches every event the later rule matches,
// because evaluation stops there. "Matches every event" is decided
// conservatively, trigger by trigger, so that the check never rejects a
// rule that can fire:
//
//   - the earlier rule's conditions are the same or weaker (an owner that
//     includes the later one's, no pages or more of them, a subset of the
//     tags and not_tags, the same team hours or none);
//   - each trigger of the later rule is covered by one of the earlier
//     rule's: a keyword by a keyword it contains as whole words ("agent"
//     covers "agent please"), a payload by the same payload or a prefix
//     or regex that accepts it, a prefix by a shorter prefix of it, a
//     regex by the same regex, an attachment type by the same type or
//     any, a referral by one whose lists include its lists, an app by
//     the same app, control_returned and bot_recovered by the same;
//   - a regex that matches every non-empty text ("." or ".*", a
//     catch-all) covers every text trigger. ("." does not match a text
//     made only of line breaks; such messages are ignored here.)
//
// The check is quadratic in the number of rules, so it is skipped above
// maxReachRules, far beyond what anyone writes by hand.
const maxReachRules = 2000

func (c *compiler) checkReachable() {
	rules := c.set.rules
	if len(rules) > maxReachRules {
		return
	}
	for j := range rules {
		later := &rules[j]
		if later.broken {
			continue
		}
		for i := range j {
			earlier := &rules[i]
			if earlier.broken || earlier.cont || !scopeCovers(earlier, later) || !earlier.covers(later) {
				continue
			}
			src := c.ruleSrc[j]
			c.enter(src)
			c.problem(at(c.rulePath[j], "name"),
				"rule %q can never match: rule %q (%s:%d:%d) comes first, matches every event this rule matches "+
					"(its conditions are the same or weaker and its triggers include this rule's), and has no \"continue: true\"; "+
					"move this rule above it, or narrow that rule",
				later.name, earlier.name, earlier.file, earlier.line, earlier.col)
			break
		}
	}
}

// scopeCovers reports whether e applies on every page l applies on.
func scopeCovers(e, l *rule) bool {
	if len(l.filePages) == 0 {
		return len(e.filePages) == 0
	}
	return len(e.filePages) > 0 && subset(l.filePages, e.filePages)
}

func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// covers reports whether every event l matches is matched by r.
func (r *rule) covers(l *rule) bool {
	if l.owners&^r.owners != 0 || r.ownerApp != "" && r.ownerApp != l.ownerApp {
		return false
	}
	if len(r.pages) > 0 && (len(l.pages) == 0 || !subset(l.pages, r.pages)) {
		return false
	}
	if !subset(r.tags, l.tags) || !subset(r.notTags, l.notTags) {
		return false
	}
	if r.open != nil && r.open != l.open || r.closed != nil && r.closed != l.closed {
		return false
	}

	if l.echo() {
		if !r.echo() || !r.echoAppsCover(l) {
			return false
		}
		if r.hasText() && (!l.hasText() || !r.textCovers(l)) {
			return false
		}
	} else if l.hasText() && (r.echo() || !r.textCovers(l)) {
		return false
	}

	for _, p := range l.postbacks {
		if !slices.Contains(r.postbacks, p) && !prefixCovers(r.pbPrefixes, p) && !regexCovers(r.pbRegex, p) {
			return false
		}
	}
	for _, p := range l.pbPrefixes {
		if !prefixCovers(r.pbPrefixes, p.value) && !anyUniversal(r.pbRegex) {
			return false
		}
	}
	for _, p := range l.pbRegex {
		if !sameRegex(r.pbRegex, p) {
			return false
		}
	}
	for _, q := range l.quickReplies {
		if !slices.Contains(r.quickReplies, q) && !prefixCovers(r.qrPrefixes, q) && !regexCovers(r.qrRegex, q) {
			return false
		}
	}
	for _, q := range l.qrPrefixes {
		if !prefixCovers(r.qrPrefixes, q.value) && !anyUniversal(r.qrRegex) {
			return false
		}
	}
	for _, q := range l.qrRegex {
		if !sameRegex(r.qrRegex, q) {
			return false
		}
	}
	if l.referral != nil && (r.referral == nil || !r.referral.covers(l.referral)) {
		return false
	}
	if l.optin != nil && (r.optin == nil || !r.optin.covers(l.optin)) {
		return false
	}
	for _, a := range l.requestFrom {
		if !slices.ContainsFunc(r.requestFrom, func(b literal) bool { return b.value == a.value }) {
			return false
		}
	}
	return (!l.returned || r.returned) && (!l.recovered || r.recovered)
}

func (r *rule) echoAppsCover(l *rule) bool {
	for _, a := range l.echoFrom {
		if !slices.ContainsFunc(r.echoFrom, func(b literal) bool { return b.name == a.name && b.value == a.value }) {
			return false
		}
	}
	return true
}

// textCovers reports whether every text trigger of l is covered by a text
// trigger of r.
func (r *rule) textCovers(l *rule) bool {
	if anyUniversal(r.regex) && len(l.attachments) == 0 {
		return true
	}
	for _, k := range l.keywords {
		if !r.phraseCovered(func(words []string) bool { return subPhrase(k.words, words) }) {
			return false
		}
	}
	if len(l.allWords) > 0 && !r.phraseCovered(func(words []string) bool {
		return slices.ContainsFunc(l.allWords, func(a []string) bool { return subPhrase(a, words) })
	}) {
		return false
	}
	for _, p := range l.regex {
		if !sameRegex(r.regex, p) {
			return false
		}
	}
	for _, a := range l.attachments {
		if !slices.ContainsFunc(r.attachments, func(b literal) bool { return b.value == "any" || b.value == a.value }) {
			return false
		}
	}
	return true
}

// phraseCovered reports whether one of r's keywords, or all of its
// all_keywords together, are always found in a text that has what
// contains(words) describes.
func (r *rule) phraseCovered(contains func(words []string) bool) bool {
	if anyUniversal(r.regex) {
		return true
	}
	for _, k := range r.keywords {
		if contains(k.words) {
			return true
		}
	}
	if len(r.allWords) == 0 {
		return false
	}
	for _, w := range r.allWords {
		if !contains(w) {
			return false
		}
	}
	return true
}

func prefixCovers(prefixes []literal, v string) bool {
	return slices.ContainsFunc(prefixes, func(p literal) bool { return strings.HasPrefix(v, p.value) })
}

func regexCovers(ps []pattern, v string) bool {
	return slices.ContainsFunc(ps, func(p pattern) bool { return p.re.MatchString(v) })
}

func sameRegex(ps []pattern, q pattern) bool {
	return slices.ContainsFunc(ps, func(p pattern) bool { return p.universal || p.re.String() == q.re.String() })
}

func anyUniversal(ps []pattern) bool {
	return slices.ContainsFunc(ps, func(p pattern) bool { return p.universal })
}

func (f *referral) covers(l *referral) bool {
	return listCovers(f.refs, l.refs, false) && listCovers(f.sources, l.sources, true) && listCovers(f.adIDs, l.adIDs, false)
}

// listCovers: a list left out accepts everything; a given one covers a
// given list that is a subset of it.
func listCovers(r, l []string, fold bool) bool {
	if r == nil {
		return true
	}
	if l == nil {
		return false
	}
	for _, v := range l {
		if fold && !containsFold(r, v) || !fold && !slices.Contains(r, v) {
			return false
		}
	}
	return true
}

// universal reports whether the regular expression matches every
// non-empty text: it can match at the start without consuming anything
// and without assertions (".*", "x*", ""), or by consuming any one
// character (".", "(?s).").
func universal(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	return matchesAnyStart(re.Simplify())
}

func matchesAnyStart(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpRepeat:
		return re.Min == 0 || re.Min == 1 && matchesAnyStart(re.Sub[0])
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true
	case syntax.OpPlus, syntax.OpCapture:
		return matchesAnyStart(re.Sub[0])
	case syntax.OpConcat:
		// The first element must accept any start and everything after it
		// must be able to match nothing.
		if len(re.Sub) == 0 {
			return true
		}
		if !matchesAnyStart(re.Sub[0]) {
			return false
		}
		for _, s := range re.Sub[1:] {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		return slices.ContainsFunc(re.Sub, matchesAnyStart)
	}
	return false
}

// nullable reports whether re can match the empty string without
// assertions.
func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpPlus, syntax.OpCapture:
		return nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		return slices.ContainsFunc(re.Sub, nullable)
	}
	return false
}
