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

// keyed is a pooled hasher with room for its digest, so a check allocates
// nothing.
type keyed struct {
	h   hash.Hash
	buf [sha256.Size]byte
}

// New returns a Signer for the app secret.
func New(secret []byte) *Signer {
	key := append([]byte(nil), secret...)
	s := &Signer{}
	s.pool256.New = func() any { return &keyed{h: hmac.New(sha256.New, key)} }
	s.pool1.New = func() any { return &keyed{h: hmac.New(sha1.New, key)} }
	return s
}

// check computes the digest of body and compares it with want in constant
// time.
func (s *Signer) check(pool *sync.Pool, body, want []byte) bool {
	k := pool.Get().(*keyed)
	k.h.Reset()
	k.h.Write(body)
	ok := hmac.Equal(k.h.Sum(k.buf[:0]), want)
	pool.Put(k)
	return ok
}

func (s *Signer) sign(pool *sync.Pool, prefix string, body []byte) string {
	return string(s.appendSign(nil, pool, prefix, body))
}

func (s *Signer) appendSign(dst []byte, pool *sync.Pool, prefix string, body []byte) []byte {
	k := pool.Get().(*keyed)
	k.h.Reset()
	k.h.Write(body)
	dst = append(dst, prefix...)
	dst = hex.AppendEncode(dst, k.h.Sum(k.buf[:0]))
	pool.Put(k)
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
	return s.check(&s.pool256, body, want[:])
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
	return s.check(&s.pool1, body, want[:])
}

// Sign256 returns the X-Hub-Signature-256 value for body.
func (s *Signer) Sign256(body []byte) string {
	return s.sign(&s.pool256, "sha256=", body)
}

// AppendSign256 appends the X-Hub-Signature-256 value for body to dst.
func (s *Signer) AppendSign256(dst, body []byte) []byte {
	return s.appendSign(dst, &s.pool256, "sha256=", body)
}

// AppendSign1 appends the legacy X-Hub-Signature value for body to dst.
func (s *Signer) AppendSign1(dst, body []byte) []byte {
	return s.appendSign(dst, &s.pool1, "sha1=", body)
}

// Sign1 returns the legacy X-Hub-Signature value for body.
func (s *Signer) Sign1(body []byte) string {
	return s.sign(&s.pool1, "sha1=", body)
}
