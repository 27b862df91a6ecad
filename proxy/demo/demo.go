// Package demo plays a scripted conversation through a real Baton, a
// sandbox Messenger platform and an echo bot, all in one process, and prints
// it as a transcript that shows who owned the thread at each step. It is
// what `baton demo` runs: the quickest way to see what Baton does.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// The cast. Ids are made up; the page inbox id is not used so nobody
// mistakes the demo for a real Page setup.
const (
	page       = "104455667788990"
	user       = "7712345678901234"
	botAppID   = "555000111222333"
	agentAppID = "999888777666555"
	botSecret  = "demo-bot-secret"
	agentSec   = "demo-agent-secret"
)

// Policy is the demo's policy file: keywords, a postback and a quick reply
// hand the user to the helpdesk app; "back to bot" while the helpdesk owns
// the thread takes it back.
const Policy = `version: 1
rules:
  - name: talk-to-human
    when:
      keywords: ["agent", "human", "talk to a human", "real person"]
      postbacks: ["AGENT_HANDOFF"]
      quick_replies: ["HANDOFF_REQUEST"]
    do:
      - send_text: "Connecting you with a teammate now."
      - pass: {to: helpdesk, reason: "user asked for a human"}
  - name: back-to-bot
    when:
      owner: other
      keywords: ["back to bot"]
    do:
      - take: {reason: "user asked for the bot"}
`

const configTemplate = `listen: 127.0.0.1:0
admin: {listen: "127.0.0.1:0"}
data_dir: %s
app:
  id: "%s"
  secret: ${DEMO_APP_SECRET}
  verify_token: demo-verify-token
graph:
  base_url: %s
  version: %s
  max_attempts: 3
pages:
  - id: "%s"
    token: ${DEMO_PAGE_TOKEN}
apps:
  helpdesk: "%s"
policies: [policy.yaml]
bot:
  url: %s
  retry_min: 20ms
  retry_max: 500ms
`

// Run plays the conversation, writing the transcript to out and Baton's
// logs to log. It returns an error if any step does not happen in time.
func Run(ctx context.Context, out io.Writer, log *zap.Logger) error {
	dir, err := os.MkdirTemp("", "baton-demo-")
	if err != nil {
		return fmt.Errorf("demo data directory: %w", err)
	}
	defer os.RemoveAll(dir)

	platform, err := sandbox.Start(sandbox.Options{
		Pages:      []string{page},
		DefaultApp: botAppID,
		Apps: []sandbox.AppSpec{
			{ID: botAppID, Secret: botSecret, CanTake: true},
			{ID: agentAppID, Secret: agentSec, CanTake: true},
		},
	})
	if err != nil {
		return fmt.Errorf("start sandbox platform: %w", err)
	}
	defer platform.Close()

	bot, err := sandbox.StartReceiver(botSecret)
	if err != nil {
		return fmt.Errorf("start echo bot: %w", err)
	}
	defer bot.Close()
	bot.OnEvent(sandbox.EchoBot(platform, botAppID))
	agent, err := sandbox.StartReceiver(agentSec)
	if err != nil {
		return fmt.Errorf("start agent app: %w", err)
	}
	defer agent.Close()
	platform.SetWebhook(agentAppID, agent.URL())

	cfgText := fmt.Sprintf(configTemplate, filepath.Join(dir, "data"), botAppID, platform.URL(), platform.Version(), page, agentAppID, bot.URL())
	if err := os.WriteFile(filepath.Join(dir, "baton.yaml"), []byte(cfgText), 0o600); err != nil {
		return fmt.Errorf("write demo config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(Policy), 0o600); err != nil {
		return fmt.Errorf("write demo policy: %w", err)
	}
	env := map[string]string{"DEMO_APP_SECRET": botSecret, "DEMO_PAGE_TOKEN": platform.Token(page, botAppID)}
	cfg, err := config.Load(filepath.Join(dir, "baton.yaml"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	baton, err := app.New(app.Options{Config: cfg, Logger: log})
	if err != nil {
		return fmt.Errorf("start baton: %w", err)
	}
	if err := baton.Start(); err != nil {
		return fmt.Errorf("start baton: %w", err)
	}
	defer baton.Close()
	platform.SetWebhook(botAppID, baton.WebhookURL())

	s := &script{ctx: ctx, p: platform, bot: bot, agent: agent}
	s.run()
	if s.err != nil {
		return s.err
	}
	printTranscript(out, platform.Transcript(page, user))
	return nil
}

// script runs steps until one fails; each step waits for what it expects to
// see at the bot or the agent app, never for a fixed time.
type script struct {
	ctx        context.Context
	p          *sandbox.Platform
	bot, agent *sandbox.Receiver
	err        error
}

func (s *script) run() {
	s.userSays("hi", s.bot, echoOf("echo: hi"))
	s.userSays("Can I talk to a human please?", s.agent, kind("pass_thread_control"))
	s.userSays("My order #1234 has not arrived.", s.agent, textOf("My order #1234 has not arrived."))
	s.agentSays("Hi, I'm Sam from support. Let me check that for you.")
	s.agentSays("It ships tomorrow morning; you'll get a tracking link.")
	s.step("agent hands back", func() error {
		return s.p.Pass(agentAppID, page, user, botAppID, "resolved")
	}, s.bot, kind("pass_thread_control"))
	s.userSays("thanks!", s.bot, echoOf("echo: thanks!"))
}

func (s *script) userSays(text string, at *sandbox.Receiver, want func(sandbox.Received) bool) {
	s.step("user says "+text, func() error { s.p.UserText(page, user, text); return nil }, at, want)
}

func (s *script) agentSays(text string) {
	s.step("agent says "+text, func() error {
		_, err := s.p.Send(agentAppID, page, user, text)
		return err
	}, s.agent, echoOf(text))
}

func (s *script) step(name string, do func() error, at *sandbox.Receiver, want func(sandbox.Received) bool) {
	if s.err != nil {
		return
	}
	seen := len(at.Events())
	if err := do(); err != nil {
		s.err = fmt.Errorf("demo step %q: %w", name, err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	err := at.WaitFor(ctx, func(evs []sandbox.Received) bool {
		for _, e := range evs[min(seen, len(evs)):] {
			if want(e) {
				return true
			}
		}
		return false
	})
	if err != nil {
		s.err = fmt.Errorf("demo step %q: expected outcome did not arrive: %w", name, err)
	}
}

func echoOf(text string) func(sandbox.Received) bool {
	return func(r sandbox.Received) bool { return r.Kind == "echo" && r.Text == text }
}
func textOf(text string) func(sandbox.Received) bool {
	return func(r sandbox.Received) bool { return r.Kind == "text" && r.Text == text }
}
func kind(k string) func(sandbox.Received) bool {
	return func(r sandbox.Received) bool { return r.Kind == k }
}

func who(appID string) string {
	switch appID {
	case "":
		return "nobody (idle)"
	case botAppID:
		return "bot"
	case agentAppID:
		return "helpdesk"
	case "user":
		return "user"
	}
	return "app " + appID
}

func printTranscript(out io.Writer, lines []sandbox.Line) {
	fmt.Fprintf(out, "Baton demo: one conversation on page %s (bot app %s, helpdesk app %s)\n\n", page, botAppID, agentAppID)
	fmt.Fprintf(out, "%-8s  %-10s  %-58s  %s\n", "t", "who", "what", "thread owner")
	fmt.Fprintf(out, "%s\n", strings.Repeat("-", 98))
	var start time.Time
	for i, l := range lines {
		if i == 0 {
			start = l.At
		}
		what := l.Text
		switch l.Kind {
		case "pass":
			what = "passes the thread (" + l.Text + ")"
		case "take":
			what = "takes the thread back (" + l.Text + ")"
		case "release":
			what = "releases the thread"
		case "postback", "quick_reply":
			what = fmt.Sprintf("taps %q (%s)", l.Text, l.Payload)
		}
		if len(what) > 58 {
			what = what[:55] + "..."
		}
		fmt.Fprintf(out, "%7.3fs  %-10s  %-58s  %s\n", l.At.Sub(start).Seconds(), who(l.From), what, who(l.Owner))
	}
	fmt.Fprintln(out)
}
