package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/batonproxy/baton/state"
)

// A queue item's value starts with its enqueue time in Unix nanoseconds,
// 8 bytes big-endian. An undecided item's record follows. A decided one
// (state.Completion.Outbox) has the top bit of the time set, which a
// positive time never has, followed by its outbox: a uvarint count, then
// each record after its uvarint length.
const decidedBit = 1 << 63

// queueValue is the stored value of an undecided item.
func queueValue(stamp [8]byte, record []byte) []byte {
	return append(append(make([]byte, 0, 8+len(record)), stamp[:]...), record...)
}

// decidedValue is the stored value of a decided item that was enqueued at
// the time in old, an item's value of either form.
func decidedValue(old []byte, outbox [][]byte) ([]byte, error) {
	if len(old) < 8 {
		return nil, errors.New("queue item too short")
	}
	n := 8 + binary.MaxVarintLen64
	for _, r := range outbox {
		n += binary.MaxVarintLen64 + len(r)
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, n), binary.BigEndian.Uint64(old)|decidedBit)
	v = binary.AppendUvarint(v, uint64(len(outbox)))
	for _, r := range outbox {
		v = append(binary.AppendUvarint(v, uint64(len(r))), r...)
	}
	return v, nil
}

// decodeQueued reads a stored item; it copies what it keeps, since v is
// only valid during the read.
func decodeQueued(key state.ThreadKey, seq uint64, v []byte) (state.Queued, error) {
	if len(v) < 8 {
		return state.Queued{}, fmt.Errorf("queue item #%d too short", seq)
	}
	stamp := binary.BigEndian.Uint64(v)
	q := state.Queued{Thread: key, Seq: seq, Enqueued: time.Unix(0, int64(stamp&^decidedBit))}
	if stamp&decidedBit == 0 {
		q.Record = append([]byte(nil), v[8:]...)
		return q, nil
	}
	q.Decided = true
	rest := v[8:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > uint64(len(rest)) {
		return state.Queued{}, fmt.Errorf("queue item #%d: bad outbox", seq)
	}
	rest = rest[n:]
	q.Outbox = make([][]byte, 0, count)
	for range count {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return state.Queued{}, fmt.Errorf("queue item #%d: bad outbox record", seq)
		}
		q.Outbox = append(q.Outbox, append([]byte{}, rest[n:n+int(l)]...))
		rest = rest[n+int(l):]
	}
	if len(rest) != 0 {
		return state.Queued{}, fmt.Errorf("queue item #%d: bytes after its outbox", seq)
	}
	return q, nil
}
