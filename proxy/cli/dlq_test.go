package cli

import (
	"testing"
)

const dlqPage = "104455667788990"

// FuzzParseThread: --thread never panics, and what it accepts names the
// thread exactly as list prints it.
func FuzzParseThread(f *testing.F) {
	for _, s := range []string{dlqPage + "/1111", dlqPage + "/", dlqPage + "/ref:abc", "/1111", "nope", "a/b/c", " a/b", "\xff/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseThread(s)
		if err != nil {
			return
		}
		if k.Page == "" || k.String() != s {
			t.Fatalf("ParseThread(%q) = %+v", s, k)
		}
	})
}
