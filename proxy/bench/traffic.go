// Package bench measures Baton against baselines in one run on one machine:
// a bare fasthttp server answering 200, a bare fasthttp forwarder to a fake
// bot, and a tuned httputil.ReverseProxy to the same fake bot. Every target
// gets the same signed Messenger traffic; the fake bot records what reached
// it, so the run also proves that no acknowledged event was lost and that
// every user's events arrived in order.
//
// Speed on shared virtual machines drifts between runs, so results are
// ratios against baselines measured in the same run, with rounds
// interleaved and everything pinned to one core (see BENCHMARKS.md).
package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Traffic builds the signed webhook bodies every target receives. An
// event's timestamp is base + its sequence number within its user, so the
// fake bot can tell the user and the position of whatever reaches it,
// whatever the kind of event, without any field a bot would not see.
type Traffic struct {
	Page   string
	Secret []byte
	Base   int64 // milliseconds; timestamps are Base + seq
	Nonce  string
}

// userBase makes user ids look like page-scoped ids (long digit strings).
const userBase = 7_000_000_000_000

// UserID is the PSID of user u.
func UserID(u int) string { return strconv.FormatInt(userBase+int64(u), 10) }

// userIndex is the inverse of UserID; -1 if s is not one of ours.
func userIndex(s []byte) int {
	n, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil || n < userBase || n-userBase > 1<<31 {
		return -1
	}
	return int(n - userBase)
}

// filler is ordinary customer text that matches none of the benchmark
// policy's rules, so most traffic goes straight to the bot.
const filler = "Hi there, I ordered the blue running shoes last week and the tracking page still says " +
	"the parcel is waiting at the depot. Could you tell me when it will be delivered? I will be " +
	"away from home on Friday afternoon, so Saturday morning would suit me much better if that " +
	"is possible. Also, is it possible to swap them for size 43 instead of 42? Thank you so much!"

// Body appends a webhook body holding the next events of users, users[i]'s
// number seqs[i] (from 1), an entry each, as Meta batches them: about 700
// bytes per message; a mix of 70% text, 10% postbacks, 10% delivery
// receipts and 10% read receipts.
func (t *Traffic) Body(dst []byte, users []int, seqs []uint32) []byte {
	dst = append(dst, `{"object":"page","entry":[`...)
	for i, u := range users {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = t.entry(dst, u, seqs[i])
	}
	return append(dst, `]}`...)
}

// entry appends the entry object of user u's event number seq.
func (t *Traffic) entry(dst []byte, u int, seq uint32) []byte {
	ts := t.Base + int64(seq)
	uid := UserID(u)
	dst = append(dst, `{"id":"`...)
	dst = append(dst, t.Page...)
	dst = append(dst, `","time":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"messaging":[{"sender":{"id":"`...)
	dst = append(dst, uid...)
	dst = append(dst, `"},"recipient":{"id":"`...)
	dst = append(dst, t.Page...)
	dst = append(dst, `"},"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	switch seq % 10 {
	case 3:
		dst = append(dst, `,"postback":{"mid":"`...)
		dst = t.mid(dst, uid, seq)
		dst = append(dst, `","title":"Track my order","payload":"TRACK_ORDER_`...)
		dst = strconv.AppendUint(dst, uint64(seq), 10)
		dst = append(dst, `"}`...)
	case 6:
		dst = append(dst, `,"delivery":{"mids":["`...)
		dst = t.mid(dst, uid, seq)
		dst = append(dst, `","`...)
		dst = t.mid(dst, uid, seq+1<<31)
		dst = append(dst, `"],"watermark":`...)
		dst = strconv.AppendInt(dst, ts, 10)
		dst = append(dst, `}`...)
	case 9:
		dst = append(dst, `,"read":{"watermark":`...)
		dst = strconv.AppendInt(dst, ts, 10)
		dst = append(dst, `}`...)
	default:
		dst = append(dst, `,"message":{"mid":"`...)
		dst = t.mid(dst, uid, seq)
		dst = append(dst, `","text":"`...)
		dst = append(dst, filler[:len(filler)-int(seq%7)*13]...)
		dst = append(dst, `"}`...)
	}
	return append(dst, `}]}`...)
}

// mid is a message id unique to the run, user and sequence number, about
// as long as Meta's.
func (t *Traffic) mid(dst []byte, uid string, seq uint32) []byte {
	dst = append(dst, "m_"...)
	dst = append(dst, t.Nonce...)
	dst = append(dst, '_')
	dst = append(dst, uid...)
	dst = append(dst, '_')
	dst = strconv.AppendUint(dst, uint64(seq), 10)
	return append(dst, "_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOp"...)
}

// Signer computes X-Hub-Signature-256 values. It keeps its keyed hash, so
// it is for one goroutine.
type Signer struct {
	mac interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
		Reset()
	}
	sum []byte
	out []byte
}

// NewSigner returns a Signer for the app secret.
func NewSigner(secret []byte) *Signer { return &Signer{mac: hmac.New(sha256.New, secret)} }

// Sign returns "sha256=<hex>" for body; valid until the next call.
func (s *Signer) Sign(body []byte) []byte {
	s.mac.Reset()
	s.mac.Write(body)
	s.sum = s.mac.Sum(s.sum[:0])
	s.out = append(s.out[:0], "sha256="...)
	s.out = hex.AppendEncode(s.out, s.sum)
	return s.out
}
