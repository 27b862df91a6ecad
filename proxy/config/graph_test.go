package config

import (
	"strings"
	"testing"
)

// appsecret_proof is on unless the file turns it off; a value that is not
// a boolean is reported at its position.
func TestGraphAppSecretProof(t *testing.T) {
	const line = "  appsecret_proof: true  #"
	if !strings.Contains(Example, line) {
		t.Fatal("the example no longer sets graph.appsecret_proof as this test expects")
	}
	cases := []struct {
		name, src string
		want      bool
	}{
		{"example", Example, true},
		{"left out", strings.Replace(Example, line, "  #", 1), true},
		{"off", strings.Replace(Example, line, "  appsecret_proof: false  #", 1), false},
	}
	for _, tc := range cases {
		cfg, err := Parse("baton.yaml", []byte(tc.src), testEnv, "/etc/baton")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.Graph.AppSecretProof != tc.want {
			t.Errorf("%s: AppSecretProof = %v; want %v", tc.name, cfg.Graph.AppSecretProof, tc.want)
		}
	}
	_, err := Parse("baton.yaml", []byte(strings.Replace(Example, line, "  appsecret_proof: sometimes  #", 1)), testEnv, "/etc/baton")
	if err == nil || !strings.Contains(err.Error(), "baton.yaml:") || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("a non-boolean appsecret_proof: err = %v", err)
	}
}
