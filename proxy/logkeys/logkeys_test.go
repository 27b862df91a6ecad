package logkeys

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/state"
)

func TestThreadAndOwnerFields(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	names := map[string]string{"263902037430900": "inbox"}
	zap.New(core).Info("handover", Thread(state.ThreadKey{Page: "p1", User: "u1"}),
		Owner("from", state.Owner{Kind: state.OwnerApp, AppID: "263902037430900"}, names),
		Owner("to", state.Owner{Kind: state.OwnerApp, AppID: "999"}, names),
		Owner("by", state.Owner{Kind: state.OwnerBot}, names))
	got := logs.All()[0].ContextMap()
	want := map[string]any{"thread": "p1/u1", "page": "p1", "user": "u1", "from": "inbox", "to": "app:999", "by": "bot"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v; want %v (all: %v)", k, got[k], v, got)
		}
	}
}
