// Package sandbox is a fake Messenger platform: a small Graph API server and
// a webhook sender that follow the Messenger Handover Protocol as it works
// under Conversation Routing. Baton's end-to-end tests and `baton demo` put
// it where graph.facebook.com and Meta's webhook delivery would be, so Baton,
// a bot and agent apps can be exercised on loopback without a real Page.
//
// The package deliberately does not import Baton's own webhook or Graph
// packages: it builds and parses the JSON itself, so a test that passes
// against the sandbox checks Baton against an independent reading of the
// platform (the shared messenger-protocol reference), not against itself.
//
// # What is imitated
//
// A Platform holds a set of Pages, a set of apps connected to every Page
// (each with a secret, a webhook URL and the "take control" permission) and
// optionally a default app. Each (page, user) pair is a thread with at most
// one owner app. The rules follow Conversation Routing:
//
//   - A user message, quick reply or postback goes to the owner on
//     entry[].messaging[] and to every other app on entry[].standby[].
//     If the thread is idle and a default app is set, the default app
//     becomes the owner first. With no default app ("zero-config") an idle
//     thread's events go to every app on messaging[].
//   - Postbacks on standby lose their payload: only the owner sees it.
//   - Only the owner may send; on an idle thread only the default app may
//     (anyone in zero-config mode). Others get code 10 / subcode 2018300.
//     Every successful send produces an echo (is_echo, app_id as a JSON
//     number, metadata) to the sender on messaging[] and to the rest on
//     standby[].
//   - pass_thread_control, take_thread_control, release_thread_control,
//     request_thread_control, extend_thread_control and thread_owner behave
//     as described in the reference (take needs a default app and the take
//     permission; taking an idle thread and releasing send no webhook;
//     thread_owner shows app_id only to the owner and the default app).
//     One deliberate difference: request_thread_control also works with a
//     default app set, which Meta reserves for zero-config Pages, so that
//     Baton's handling of request webhooks can be tested on a routed Page.
//   - The Send API checks messaging_type, text length (2000), metadata
//     length (<1000) and 13 quick replies, accepts attachments/templates and
//     the inline thread_control (pass/release) of Conversation Routing. It
//     does not enforce the 24-hour messaging window.
//   - Control lapses after 24 hours without user activity (measured with the
//     injected clock) unless extended, up to 7 days.
//   - Graph errors have Meta's shape {"error":{message,type,code,
//     error_subcode,fbtrace_id}}; bad tokens get code 190.
//   - The set-up reads `baton doctor` makes answer from the same state:
//     the Page node (id, name, messaging_feature_status), subscribed_apps
//     (every app starts subscribed to DefaultSubscribedFields on every
//     page; SetSubscribedFields and a POST change that) and
//     secondary_receivers, which answers only the default app. take
//     refuses an app without routing or permission before it looks at
//     the recipient.
//
// # Webhook delivery
//
// Every webhook carries one event in a {"object":"page","entry":[...]}
// envelope, with non-ASCII characters escaped as \uXXXX the way Meta does,
// and is signed per receiving app with both X-Hub-Signature-256 and the
// legacy X-Hub-Signature. Each app has one ordered outbox drained by one
// goroutine: a delivery that is not answered 200 is retried after
// Options.RetryDelay, and nothing behind it is sent meanwhile, so an app sees
// its events strictly in the order they were generated. (Meta does not
// promise order after failures; the sandbox is stricter so tests stay
// deterministic.) Apps without a webhook URL keep their events queued until
// SetWebhook. Platform.Flush waits for the outboxes to drain.
//
// # Concurrency
//
// All state sits behind one mutex. Actions only enqueue webhooks and never
// wait for delivery, so a Receiver callback (EchoBot, for example) may call
// Platform.Send while the platform is waiting for that same callback's 200.
//
// The Receiver type is the other side: a fake bot or agent-app webhook
// endpoint that checks both signatures and records what arrives.
package sandbox
