// Package messenger splits Messenger Platform webhook deliveries into single
// events and reads the few fields Baton routes on (page, user, kind, mid, text,
// payloads, handover app ids).
//
// Each event keeps its JSON exactly as Meta sent it, so the bot receives the
// same bytes, unknown fields included. Parsing is tolerant where Meta is
// inconsistent: ids may be strings or numbers, timestamps may be strings, and
// some events have no sender at all (app_roles, policy_enforcement, checkbox
// opt-ins that carry only optin.user_ref).
package messenger
