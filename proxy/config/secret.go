package config

import (
	"fmt"
)

const redacted = "[redacted]"

// Secret holds a credential (app secret, verify token, page token). Every
// way of printing or serializing it (fmt with any verb, JSON, text, YAML,
// zap, which uses String or JSON) shows "[redacted]", so a Config can be
// logged or dumped whole. Only Reveal returns the value, which makes every
// use of a secret easy to find in review.
type Secret struct {
	value string
}

// NewSecret wraps a credential, e.g. for tests.
func NewSecret(value string) Secret { return Secret{value: value} }

// Reveal returns the credential itself.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

// String implements fmt.Stringer (also used by zap.Stringer and zap.Any).
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer for %#v.
func (s Secret) GoString() string { return `config.Secret("` + redacted + `")` }

// Format implements fmt.Formatter. Without it, verbs that do not use
// String (such as %d or %x on a struct) would print the unexported field.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(redacted))
}

// MarshalJSON implements json.Marshaler (also what zap.Reflect uses).
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }
