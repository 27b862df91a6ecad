package badgerstore

import (
	"encoding/binary"
	"errors"

	"github.com/batonproxy/baton/state"
)

// Key spaces. Thread keys are length-prefixed so that no page or user id,
// whatever bytes it holds, can make one thread's keys a prefix of another's.
const (
	spaceQueue   = 'q' // q thread seq -> enqueued-at (8 bytes) + record
	spaceThread  = 't' // t thread -> JSON Thread
	spaceHistory = 'h' // h thread seq -> JSON Change
	spaceDead    = 'x' // x thread seq -> reason length + reason + record
	spaceDedup   = 'd' // d dedup key -> seen-at (8 bytes)
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
