package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/batonproxy/baton/policies/yamlfile"
)

func TestAdminListener(t *testing.T) {
	env := func(name string) (string, bool) {
		if name == "ADMIN_TOKEN" {
			return "admin-token-0123", true
		}
		return testEnv(name)
	}
	tests := []struct {
		name, admin string
		listen      string
		token       string
		problem     string // "" : valid
	}{
		{name: "default", listen: DefaultAdminListen},
		{name: "loopback v4 without token", admin: "admin:\n  listen: 127.0.0.2:9191\n", listen: "127.0.0.2:9191"},
		{name: "loopback v6 without token", admin: "admin:\n  listen: \"[::1]:9090\"\n", listen: "[::1]:9090"},
		{name: "localhost without token", admin: "admin:\n  listen: localhost:0\n", listen: "localhost:0"},
		{name: "all interfaces with token", admin: "admin:\n  listen: :9090\n  token: ${ADMIN_TOKEN}\n", listen: ":9090", token: "admin-token-0123"},
		{name: "loopback with token", admin: "admin:\n  token: literal\n", listen: DefaultAdminListen, token: "literal"},
		{
			name: "all interfaces without token", admin: "admin:\n  listen: :9090\n",
			problem: "baton.yaml:11:1: admin.token: required when admin.listen (:9090) is not a loopback address",
		},
		{
			name: "a name that is not localhost", admin: "admin:\n  listen: baton.internal:9090\n  token: \"\"\n",
			problem: "baton.yaml:13:10: admin.token: required when admin.listen (baton.internal:9090) is not a loopback address",
		},
		{
			name: "bad address", admin: "admin:\n  listen: nowhere\n",
			problem: `baton.yaml:12:11: admin.listen: invalid address "nowhere": want host:port, like "127.0.0.1:9090" or "127.0.0.1:8080"`,
		},
		{
			name: "unknown key", admin: "admin:\n  tokne: x\n",
			problem: `baton.yaml:12:3: unknown key "tokne" in admin (did you mean "token"?)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("baton.yaml", []byte(minimal+tt.admin), env, "")
			if tt.problem != "" {
				var probs yamlfile.Problems
				if !errors.As(err, &probs) {
					t.Fatalf("error %v (%T), want problems", err, err)
				}
				if got := err.Error(); !strings.Contains(got, tt.problem) {
					t.Fatalf("problems:\n%s\nwant one:\n%s", got, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Admin.Listen != tt.listen || cfg.Admin.Token.Reveal() != tt.token {
				t.Errorf("admin = %q, %q; want %q, %q", cfg.Admin.Listen, cfg.Admin.Token.Reveal(), tt.listen, tt.token)
			}
		})
	}
}

func TestAdminTokenNeverPrinted(t *testing.T) {
	const token = "admin-token-s3cr3t"
	cfg, err := Parse("baton.yaml", []byte(minimal+"admin:\n  token: "+token+"\n"), testEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg.Admin), fmt.Sprint(cfg.Admin.Token)} {
		if strings.Contains(out, token) {
			t.Errorf("the admin token is printed: %s", out)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9090": true, "127.255.0.9:1": true, "[::1]:9090": true, "localhost:9090": true, "LOCALHOST:1": true,
		":9090": false, "0.0.0.0:9090": false, "[::]:9090": false, "10.0.0.1:9090": false, "example.com:9090": false,
		"127.0.0.1": false, "": false, "[::ffff:127.0.0.1]:80": true,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
