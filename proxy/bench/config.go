package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// benchPage, benchSecret and benchAppID identify the benchmark's Page and
// app; the secret signs the generated traffic.
const (
	benchPage   = "104455667788990"
	benchSecret = "bench-app-secret"
	benchAppID  = "555000111222333"
)

// benchPolicy is 20 rules of the kinds ops write (keywords, phrases,
// regexes, postbacks, quick replies, referrals, attachments, tags, hours),
// none of which matches the generated traffic: the common case, where
// Baton judges every event and passes it to the bot.
const benchPolicy = `version: 1
teams:
  support:
    timezone: Europe/Berlin
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-16:00"]}
rules:
  - {name: agent-in-hours, when: {open: support, keywords: [agent, human, "talk to a human", representative]}, do: [{send_text: "Connecting you."}, {pass: {to: zendesk}}]}
  - {name: agent-closed, when: {closed: support, keywords: [agent, human, "talk to a human", representative]}, do: [{send_text: "We are closed."}], forward: false}
  - {name: operator, when: {keywords: [operator, "real person", "speak to someone"]}, do: [{pass: {to: zendesk}}]}
  - {name: complaint, when: {all_keywords: [complaint, manager]}, do: [{pass: {to: zendesk}}, {tag: escalated}]}
  - {name: refund, when: {keywords: [refund, chargeback, "money back"]}, do: [{pass: {to: zendesk}}]}
  - {name: cancel, when: {keywords: ["cancel my account", "close my account", "delete my data"]}, do: [{pass: {to: inbox}}]}
  - {name: legal, when: {keywords: [lawyer, lawsuit, gdpr]}, do: [{pass: {to: inbox}}, {tag: legal}]}
  - {name: card-number, when: {regex: ['\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b']}, do: [{send_text: "Please never send card numbers here."}], forward: false}
  - {name: ticket-ref, when: {regex: ['(?i)\bticket\s*#?\s*[A-Z]{2}-\d{6}\b']}, do: [{pass: {to: zendesk}}]}
  - {name: none-of-these, when: {postbacks: [NONE_OF_THESE]}, do: [{pass: {to: zendesk}}]}
  - {name: handoff-button, when: {postbacks: [AGENT_HANDOFF, TALK_TO_US]}, do: [{pass: {to: zendesk}}]}
  - {name: support-prefix, when: {postback_prefixes: [SUPPORT_]}, do: [{pass: {to: inbox}}]}
  - {name: quick-human, when: {quick_replies: [QR_HUMAN]}, do: [{pass: {to: zendesk}}]}
  - {name: quick-billing, when: {quick_reply_prefixes: [QR_BILLING_]}, do: [{pass: {to: inbox}}]}
  - {name: mme-support, when: {referral: {refs: [support], sources: [SHORTLINK]}}, do: [{pass: {to: inbox}}]}
  - {name: ad-campaign, when: {referral: {ad_ids: ["6045246247433"]}}, do: [{tag: from-ad}], continue: true}
  - {name: vip, when: {tags: [vip], keywords: [help]}, do: [{pass: {to: zendesk}}]}
  - {name: files, when: {attachments: [file]}, do: [{pass: {to: inbox}}]}
  - {name: escalated-again, when: {tags: [escalated], keywords: [again, still]}, do: [{pass: {to: zendesk}}]}
  - {name: optin-support, when: {optin: {refs: [support]}}, do: [{pass: {to: inbox}}]}
`

// Baton posts to the fake bot in batches, as a team whose bot reads every
// entry of a webhook would configure it.
const (
	benchBotBatch    = 32
	benchBotParallel = 8
)

// writeBatonConfig writes baton.yaml and its policy into dir.
func writeBatonConfig(dir, listen, admin, bot, dataDir string) (string, error) {
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(benchPolicy), 0o644); err != nil {
		return "", fmt.Errorf("write policy: %w", err)
	}
	cfg := fmt.Sprintf(`listen: %q
admin: {listen: %q}
data_dir: %q
app: {id: %q, secret: %q, verify_token: bench}
graph: {base_url: "http://%s"}
pages: [{id: %q, token: bench-page-token}]
apps: {zendesk: "111222333444555", inbox: "263902037430900"}
policies: [policy.yaml]
reload: {watch: false}
bot: {url: "http://%s/webhook", timeout: 10s, retry_min: 50ms, retry_max: 1s, batch: %d, parallel: %d}
cache_size: 100000
log: {level: info}
`, listen, admin, dataDir, benchAppID, benchSecret, bot, benchPage, bot, benchBotBatch, benchBotParallel)
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	return path, nil
}
