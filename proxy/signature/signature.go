// Package signature checks and makes the HMAC signatures Meta puts on webhook
// deliveries: X-Hub-Signature-256 (sha256=<hex>) and the legacy
// X-Hub-Signature (sha1=<hex>).
//
// Keyed hashers are pooled because hmac.New costs more than hashing a
// typical 700-byte webhook body.
package signature

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Header names used by Meta and expected by bots.
const (
	Header256 = "X-Hub-Signature-256"
	Header1   = "X-Hub-Signature"
)

// Signer signs and verifies bodies with one app secret. It is safe for
// concurrent use.
type Signer struct {
	pool256 sync.Pool
	pool1   sync.Pool
}

// New returns a Signer for the app secret.
func New(secret []byte) *Signer {
	key := append([]byte(nil), secret...)
	s := &Signer{}
	s.pool256.New = func() any { return hmac.New(sha256.New, key) }
	s.pool1.New = func() any { return hmac.New(sha1.New, key) }
	return s
}

func (s *Signer) sum(pool *sync.Pool, body, dst []byte) []byte {
	h := pool.Get().(hash.Hash)
	h.Reset()
	h.Write(body)
	dst = h.Sum(dst)
	pool.Put(h)
	return dst
}

// Verify256 reports whether header is a valid "sha256=<hex>" signature of
// body. The comparison of the digests is constant-time.
func (s *Signer) Verify256(body, header []byte) bool {
	const prefix = "sha256="
	if len(header) != len(prefix)+2*sha256.Size || string(header[:len(prefix)]) != prefix {
		return false
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], header[len(prefix):]); err != nil {
		return false
	}
	var buf [sha256.Size]byte
	got := s.sum(&s.pool256, body, buf[:0])
	return hmac.Equal(got, want[:])
}

// Verify1 reports whether header is a valid legacy "sha1=<hex>" signature.
func (s *Signer) Verify1(body, header []byte) bool {
	const prefix = "sha1="
	if len(header) != len(prefix)+2*sha1.Size || string(header[:len(prefix)]) != prefix {
		return false
	}
	var want [sha1.Size]byte
	if _, err := hex.Decode(want[:], header[len(prefix):]); err != nil {
		return false
	}
	var buf [sha1.Size]byte
	got := s.sum(&s.pool1, body, buf[:0])
	return hmac.Equal(got, want[:])
}

// Sign256 returns the X-Hub-Signature-256 value for body.
func (s *Signer) Sign256(body []byte) string {
	var buf [sha256.Size]byte
	return "sha256=" + hex.EncodeToString(s.sum(&s.pool256, body, buf[:0]))
}

// Sign1 returns the legacy X-Hub-Signature value for body.
func (s *Signer) Sign1(body []byte) string {
	var buf [sha1.Size]byte
	return "sha1=" + hex.EncodeToString(s.sum(&s.pool1, body, buf[:0]))
}
