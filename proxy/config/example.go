package config

// Example is a complete, commented configuration. It parses when the
// environment provides BATON_APP_SECRET, BATON_VERIFY_TOKEN and
// PAGE_TOKEN; testdata/config/baton.example.yaml is the same text (a test
// keeps them equal), ready to copy.
const Example = `# Baton configuration, read by: baton serve --config baton.yaml
#
# Values may reference environment variables as ${NAME}; keep secrets out
# of this file that way. Write $${ for a literal "${". Relative paths are
# resolved against this file's directory. Unknown keys are errors, and
# every problem is reported at once with its line and column.

# Address for Meta's webhooks (and a liveness answer). Default ":8080".
listen: ":8080"

# The admin listener: /-/healthy, /-/ready, /metrics, the admin API, the
# dashboard and the CLI's commands. Off loopback it needs a token.
admin:
  listen: 127.0.0.1:9090
  # token: ${BATON_ADMIN_TOKEN}   # required when listen is not loopback

# Where Baton keeps thread state, queues and timers. Required.
data_dir: /var/lib/baton

# The Messenger app the bot runs as (Baton takes its place as the Page's
# webhook receiver, so it is the primary receiver of the handover protocol).
app:
  id: "555000111222333"
  secret: ${BATON_APP_SECRET}          # checks X-Hub-Signature-256
  verify_token: ${BATON_VERIFY_TOKEN}  # answers Meta's webhook verification

# Graph API calls (thread control, sending messages). All optional.
graph:
  base_url: https://graph.facebook.com
  version: v25.0
  timeout: 10s       # per request
  max_attempts: 5    # per call, including the first
  retry_budget: 1h   # a handover effect rate-limited or refused for a bad
                     # page token is tried again this long, then recorded failed
  appsecret_proof: true  # send appsecret_proof (from app.secret) with every
                         # call, as "Require App Secret" demands

# The Pages Baton serves, with their Page access tokens. At least one.
pages:
  - id: "104455667788990"
    token: ${PAGE_TOKEN}

# Other apps policies can pass a conversation to: name -> app id.
# ("default" is reserved: in a policy it means the page's default app.)
apps:
  inbox: "263902037430900"

# Policy files, evaluated in order; the first matching rule wins.
policies:
  - policies/handoff.yaml

# Picking up edited policy files. SIGHUP always re-reads them; with watch
# on, Baton also polls them and reloads when their contents change, which
# also sees a Kubernetes ConfigMap update. A bad file keeps the running
# rules (check files first with: baton check --config baton.yaml).
reload:
  watch: true
  interval: 2s   # time between polls

# Recording of accepted webhook events, one JSON line each, for
# "baton replay" (try policy changes on real traffic). Off unless set.
# The file is renamed to <path>.1 when it would pass max_bytes, so at most
# about twice that is kept. It holds users' messages: treat it as
# personal data.
# record:
#   path: events.jsonl
#   max_bytes: 104857600   # 100 MiB

# The existing bot, which receives every event no policy claims.
bot:
  url: http://127.0.0.1:3000/webhook
  timeout: 10s
  forward_standby: false   # also deliver standby events (another app owns the thread)
  retry_min: 100ms         # backoff bounds for redelivery to the bot
  retry_max: 30s
  # batch: 32              # events per POST when the bot is busy (default 1: each
  # parallel: 8            # alone); only for a bot that reads every entry
  retry_budget: 24h        # an event this old that fails again becomes a dead letter
  circuit_open_after: 30s  # every delivery failed this long: bot_down actions run,
  circuit_probe_every: 5s  # and deliveries go one probe at a time

webhook:
  path: /webhook
  max_body_bytes: 1048576  # 1 MiB
  ack_timeout: 5s          # a webhook waits this long for the disk, then gets 503
  read_timeout: 10s        # to read one request; a slow client is cut off, unanswered
  write_timeout: 10s       # to write one answer
  idle_timeout: 60s        # a kept-alive connection idle this long is closed
  max_conns: 1024          # concurrent connections

# Past these Baton answers 503 with Retry-After (Meta retries later)
# rather than accept what it could not keep.
limits:
  queued_per_thread: 10000       # events waiting in one conversation
  queued_total: 1000000          # events waiting in all of them
  min_free_disk_bytes: 268435456 # free space kept on the data directory's disk (0: none)
  disk_reserve_bytes: 67108864   # blocks held back, given up when the disk is full (0: none)

# Thread histories (handovers, why, effects) are kept this long.
history:
  keep: 90d

# Meta may deliver an event more than once; ids are remembered this long.
dedup_window: 48h

# A clean stop (SIGTERM) refuses new webhooks, lets POSTs to the bot and
# Graph calls in flight finish for this long, then abandons them.
shutdown_timeout: 5s

# Thread states kept in memory in front of the database.
cache_size: 100000

log:
  level: info   # debug | info | warn | error
`
