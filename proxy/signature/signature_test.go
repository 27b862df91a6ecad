package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
)

// Known answer computed independently with crypto/hmac.
func reference(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestVerify256(t *testing.T) {
	s := New([]byte("app-secret"))
	body := `{"object":"page","entry":[{"id":"1","messaging":[{"message":{"text":"\u00e4"}}]}]}`
	good := reference("app-secret", body)
	if !s.Verify256([]byte(body), []byte(good)) {
		t.Fatal("valid signature refused")
	}
	if got := s.Sign256([]byte(body)); got != good {
		t.Fatalf("Sign256 = %s; want %s", got, good)
	}
	bad := []string{
		"", "sha256=", good[:len(good)-1], good + "0", strings.ToUpper(good),
		"sha1=" + good[7:], reference("other-secret", body), reference("app-secret", body+" "),
		"sha256=" + strings.Repeat("z", 64),
	}
	for _, h := range bad {
		if s.Verify256([]byte(body), []byte(h)) {
			t.Errorf("accepted %q", h)
		}
	}
}

func TestSign1MatchesVerify1(t *testing.T) {
	s := New([]byte("k"))
	sig := s.Sign1([]byte("body"))
	if !strings.HasPrefix(sig, "sha1=") || !s.Verify1([]byte("body"), []byte(sig)) || s.Verify1([]byte("other"), []byte(sig)) {
		t.Fatalf("sha1 signature %q does not verify as expected", sig)
	}
}

// The append forms write the same values after what dst holds.
func TestAppendSignatures(t *testing.T) {
	s := New([]byte("app-secret"))
	body := []byte(`{"object":"page"}`)
	got := s.AppendSign1(s.AppendSign256([]byte("x:"), body), body)
	if want := "x:" + reference("app-secret", string(body)) + s.Sign1(body); string(got) != want {
		t.Fatalf("appended %q; want %q", got, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New([]byte("k"))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				b := []byte(strings.Repeat("x", j))
				if !s.Verify256(b, []byte(reference("k", string(b)))) {
					t.Error("pooled hasher gave a wrong digest")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkVerify256(b *testing.B) {
	s := New([]byte("app-secret"))
	body := []byte(strings.Repeat("x", 700))
	sig := []byte(s.Sign256(body))
	b.ReportAllocs()
	for b.Loop() {
		if !s.Verify256(body, sig) {
			b.Fatal("refused")
		}
	}
}

func FuzzVerify256(f *testing.F) {
	s := New([]byte("app-secret"))
	f.Add([]byte(`{"object":"page"}`), []byte(s.Sign256([]byte(`{"object":"page"}`))))
	f.Add([]byte(""), []byte("sha256="))
	f.Add([]byte("x"), []byte("sha256="+strings.Repeat("g", 64)))
	f.Fuzz(func(t *testing.T, body, header []byte) {
		got := s.Verify256(body, header)
		// Hex digits may come in either case; the digest is what counts.
		ref := reference("app-secret", string(body))
		want := len(header) == len(ref) && string(header[:7]) == "sha256=" && strings.EqualFold(string(header[7:]), ref[7:])
		if got != want {
			t.Fatalf("Verify256(%q, %q) = %v; want %v", body, header, got, want)
		}
	})
}
