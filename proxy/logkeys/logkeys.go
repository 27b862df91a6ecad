// Package logkeys names the log fields every package uses for a thread
// and for an app, so that one query finds a conversation's lines wherever
// they come from: "thread" (page/user), "page" and "user" together, and
// apps by their name from the config's apps: map rather than their ids.
package logkeys

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/state"
)

type thread state.ThreadKey

func (t thread) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("thread", t.Page+"/"+t.User)
	enc.AddString("page", t.Page)
	enc.AddString("user", t.User)
	return nil
}

// Thread is a thread's fields: thread, page and user, inline.
func Thread(k state.ThreadKey) zap.Field { return zap.Inline(thread(k)) }

// Owner is an owner under key: "bot", "idle", "unknown", the app's name
// from names (app id -> name) when it has one, else "app:ID".
func Owner(key string, o state.Owner, names map[string]string) zap.Field {
	if o.Kind == state.OwnerApp {
		if name, ok := names[o.AppID]; ok {
			return zap.String(key, name)
		}
	}
	return zap.Stringer(key, o)
}
