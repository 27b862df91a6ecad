package badgerstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/batonproxy/baton/state"
)

// Key spaces. Thread keys are length-prefixed so that no page or user id,
// whatever bytes it holds, can make one thread's keys a prefix of another's.
const (
	spaceQueue   = 'q' // q thread seq -> enqueued-at (8 bytes) + record, or a decided item's outbox (queue.go)
	spaceThread  = 't' // t thread -> JSON Thread
	spaceHistory = 'h' // h thread seq -> JSON Change
	spaceDead    = 'x' // x thread seq -> reason length + reason + record
	spaceDedup   = 'd' // d dedup key -> seen-at (8 bytes)
	spaceTimer   = 'T' // T thread kind -> due (8 bytes) + data
	spaceDue     = 'I' // I due thread kind -> nothing: timers in due order
)

var keySeq = []byte("m/seq") // last sequence number handed out

func threadPrefix(space byte, k state.ThreadKey) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen16+len(k.Page)+len(k.User)+8)
	b = append(b, space)
	b = binary.AppendUvarint(b, uint64(len(k.Page)))
	b = append(b, k.Page...)
	b = binary.AppendUvarint(b, uint64(len(k.User)))
	return append(b, k.User...)
}

func seqKey(space byte, k state.ThreadKey, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(threadPrefix(space, k), seq)
}

func dedupKey(k []byte) []byte { return append([]byte{spaceDedup}, k...) }

var errBadKey = errors.New("badgerstore: malformed key")

// parseSeqKey splits a key made by seqKey.
func parseSeqKey(key []byte) (state.ThreadKey, uint64, error) {
	if len(key) < 1 {
		return state.ThreadKey{}, 0, errBadKey
	}
	b := key[1:]
	var parts [2]string
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return state.ThreadKey{}, 0, errBadKey
		}
		parts[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if len(b) != 8 {
		return state.ThreadKey{}, 0, errBadKey
	}
	return state.ThreadKey{Page: parts[0], User: parts[1]}, binary.BigEndian.Uint64(b), nil
}

func appendKind(b []byte, kind string) []byte {
	b = binary.AppendUvarint(b, uint64(len(kind)))
	return append(b, kind...)
}

func timerKey(k state.ThreadKey, kind string) []byte {
	return appendKind(threadPrefix(spaceTimer, k), kind)
}

// dueKey orders timers by due time; the thread and kind follow so that
// equal due times do not collide.
func dueKey(due time.Time, k state.ThreadKey, kind string) []byte {
	b := binary.BigEndian.AppendUint64([]byte{spaceDue}, uint64(due.UnixNano()))
	return appendKind(append(b, threadPrefix(0, k)[1:]...), kind)
}

// parseDueKey splits a key made by dueKey.
func parseDueKey(key []byte) (time.Time, state.ThreadKey, string, error) {
	if len(key) < 9 || key[0] != spaceDue {
		return time.Time{}, state.ThreadKey{}, "", errBadKey
	}
	due := time.Unix(0, int64(binary.BigEndian.Uint64(key[1:9])))
	b := key[9:]
	var parts [3]string
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return time.Time{}, state.ThreadKey{}, "", errBadKey
		}
		parts[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return time.Time{}, state.ThreadKey{}, "", errBadKey
	}
	return due, state.ThreadKey{Page: parts[0], User: parts[1]}, parts[2], nil
}
