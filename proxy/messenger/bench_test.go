package messenger

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

// The benchmark deliveries are shaped like Meta's: 15-digit page ids,
// 16-digit PSIDs, mids of about 90 characters, millisecond timestamps.
const (
	benchPage = "104455667788990"
	benchPSID = "6789012345678901"
	benchMID  = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"
	// A customer's message of a few sentences, which brings the one-event
	// delivery to about 700 bytes.
	benchText = "Hi there, I ordered a pair of running shoes last Tuesday and the tracking page still says " +
		"the parcel is waiting at the depot in Leipzig. Could you check whether it will arrive before the " +
		"weekend? I am travelling on Saturday morning and would otherwise rather pick it up at your store " +
		"in the city centre. I placed it through your Android app. Thanks a lot, and sorry for the long message!"
)

func benchEnvelope(entries ...string) []byte {
	return []byte(`{"object":"page","entry":[` + strings.Join(entries, ",") + `]}`)
}

func benchEntry(time int64, messaging, standby []string) string {
	e := fmt.Sprintf(`{"id":"%s","time":%d,"messaging":[%s]`, benchPage, time, strings.Join(messaging, ","))
	if len(standby) > 0 {
		e += `,"standby":[` + strings.Join(standby, ",") + `]`
	}
	return e + "}"
}

func benchText1(user, mid, text string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"message":{"mid":"%s","text":%q}}`,
		user, benchPage, mid, text)
}

func benchPostback(user string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"postback":{"title":"Track my parcel","payload":"TRACK_ORDER_4471","mid":"%s"}}`,
		user, benchPage, benchMID)
}

func benchDelivery(user string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"delivery":{"mids":["%s"],"watermark":1767225599000}}`,
		user, benchPage, benchMID)
}

func benchRead(user string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"read":{"watermark":1767225599000}}`,
		user, benchPage)
}

func benchQuickReply(user string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"message":{"mid":"%s","text":"Yes please","quick_reply":{"payload":"CONFIRM_DELIVERY_SLOT"}}}`,
		user, benchPage, benchMID)
}

func benchEcho(user string) string {
	return fmt.Sprintf(`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":1767225599876,"message":{"is_echo":true,"app_id":555000111222333,"mid":"%s","text":"Your parcel is out for delivery today."}}`,
		benchPage, user, benchMID)
}

// benchBodies are the deliveries BenchmarkParse reads, with the number of
// events in each. The batch is what a busy page gets when Meta groups
// events: two entries, messaging and standby, users and receipts mixed.
func benchBodies() []struct {
	name   string
	body   []byte
	events int
} {
	u2, u3 := "6789012345678902", "6789012345678903"
	return []struct {
		name   string
		body   []byte
		events int
	}{
		{"text", benchEnvelope(benchEntry(1767225600123, []string{benchText1(benchPSID, benchMID, benchText)}, nil)), 1},
		{"postback", benchEnvelope(benchEntry(1767225600123, []string{benchPostback(benchPSID)}, nil)), 1},
		{"delivery", benchEnvelope(benchEntry(1767225600123, []string{benchDelivery(benchPSID)}, nil)), 1},
		{"read", benchEnvelope(benchEntry(1767225600123, []string{benchRead(benchPSID)}, nil)), 1},
		{"batch", benchEnvelope(
			benchEntry(1767225600123,
				[]string{benchText1(benchPSID, benchMID, benchText), benchQuickReply(u2), benchEcho(u2), benchDelivery(u3)},
				[]string{benchText1(u3, benchMID+"x", "thanks, that was quick")}),
			benchEntry(1767225600200, []string{benchRead(benchPSID), benchPostback(u3)}, nil)), 7},
	}
}

// BenchmarkParse measures splitting a delivery into events and reading
// their routing fields, as the ingress does for every POST.
func BenchmarkParse(b *testing.B) {
	for _, bc := range benchBodies() {
		b.Run(bc.name, func(b *testing.B) {
			// Checked once so the loop measures parsing only.
			if evs, err := Parse(bc.body); err != nil || len(evs) != bc.events {
				b.Fatalf("%d events, %v; want %d", len(evs), err, bc.events)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				if _, err := Parse(bc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEvent is the parsed one-event text delivery.
func benchEvent(b *testing.B) Event {
	evs, err := Parse(benchBodies()[0].body)
	if err != nil || len(evs) != 1 {
		b.Fatalf("%d events, %v", len(evs), err)
	}
	return evs[0]
}

// BenchmarkEncodeRecord measures building the queue record of an event.
func BenchmarkEncodeRecord(b *testing.B) {
	ev := benchEvent(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Raw)))
	for b.Loop() {
		EncodeRecord(&ev)
	}
}

// BenchmarkDecodeRecord measures what a thread worker does with each queue
// item: re-read the routing fields from the stored record.
func BenchmarkDecodeRecord(b *testing.B) {
	ev := benchEvent(b)
	rec := EncodeRecord(&ev)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := DecodeRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelope measures wrapping an event for delivery to the bot.
func BenchmarkEnvelope(b *testing.B) {
	ev := benchEvent(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Raw)))
	for b.Loop() {
		Envelope(&ev)
	}
}

// BenchmarkValidate measures the validator that runs before the parser
// on every body beside the fastjson validator it replaced, in the same
// run: the ratio is the fast path's cost of the depth and size limits.
func BenchmarkValidate(b *testing.B) {
	for _, bc := range benchBodies() {
		b.Run(bc.name, func(b *testing.B) {
			var ours, theirs time.Duration
			for b.Loop() {
				start := time.Now()
				for range 100 {
					if err := validate(bc.body); err != nil {
						b.Fatal(err)
					}
				}
				mid := time.Now()
				for range 100 {
					if err := fastjson.ValidateBytes(bc.body); err != nil {
						b.Fatal(err)
					}
				}
				ours, theirs = ours+mid.Sub(start), theirs+time.Since(mid)
			}
			b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N)/100, "validate-ns")
			b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N)/100, "fastjson-ns")
			b.ReportMetric(float64(ours)/float64(theirs), "validate/fastjson")
		})
	}
}

// realBody is a delivery of about size bytes of Meta-shaped text
// messages, as a busy page's batch.
func realBody(size int) []byte {
	one := benchEntry(1767225600123, []string{benchText1(benchPSID, benchMID, benchText)}, nil)
	return benchEnvelope(strings.TrimSuffix(strings.Repeat(one+",", size/(len(one)+1)), ","))
}

// deepEvents is the costliest body within every limit: events that each
// nest objects as deep as allowed, about size bytes in all.
func deepEvents(size int) []byte {
	const levels = MaxDepth - 5 // the envelope, entry and event take five
	one := `{"sender":{"id":"` + benchPSID + `"},"x":` + strings.Repeat(`{"abcdef":`, levels) + "1" + strings.Repeat("}", levels) + "}"
	events := make([]string, min(size/(len(one)+1), MaxEvents))
	for i := range events {
		events[i] = one
	}
	return benchEnvelope(benchEntry(1767225600123, events, nil))
}

// BenchmarkHostile parses, at each size, a delivery of real events, the
// costliest body within the limits (deepEvents) and the hostile bodies
// (hostileBodies: deep nesting, open or closed, dense values, empty
// events, long strings), in the same loop. It reports each one's time as
// a ratio to the real delivery's, and the real delivery's time per byte:
// ratios that stay put as the size grows are parsing linear in the size.
// (Before the validator, an unclosed nesting of 10 KB took 6 s here and
// of 20 KB four times that.)
func BenchmarkHostile(b *testing.B) {
	for _, size := range []int{16 << 10, 128 << 10, 1 << 20} {
		bodies := hostileBodies(size)
		bodies["deep events"] = deepEvents(size)
		real := realBody(size)
		names := slices.Sorted(maps.Keys(bodies))
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			spent := make(map[string]time.Duration)
			var realSpent time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := ParseShared(real); err != nil {
					b.Fatal(err)
				}
				realSpent += time.Since(start)
				for _, name := range names {
					start := time.Now()
					ParseShared(bodies[name])
					spent[name] += time.Since(start)
				}
			}
			b.ReportMetric(float64(realSpent.Nanoseconds())/float64(b.N)/float64(len(real)), "real-ns/B")
			for _, name := range names {
				b.ReportMetric(float64(spent[name])/float64(realSpent), strings.ReplaceAll(name, " ", "-")+"/real")
			}
		})
	}
}
