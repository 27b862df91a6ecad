package bench

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// generator sends the traffic to one target. A user's next event is sent
// only after the previous one was acknowledged, so each user's order is
// defined by the acks and the fake bot must see the same order.
type generator struct {
	traffic *Traffic
	hc      *fasthttp.HostClient
	uri     string
	acked   []uint32 // per user: events acknowledged (their seqs are 1..acked)
	errs    atomic.Int64
	lastErr atomic.Value
}

func newGenerator(t *Traffic, addr string, users int) *generator {
	return &generator{
		traffic: t, uri: "http://" + addr + "/webhook", acked: make([]uint32, users),
		hc: &fasthttp.HostClient{
			Addr: addr, MaxConns: 4096, MaxConnWaitTimeout: 30 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		},
	}
}

// sender is one connection's worth of reusable buffers.
type sender struct {
	g      *generator
	signer *Signer
	req    *fasthttp.Request
	resp   *fasthttp.Response
	body   []byte
	seqs   []uint32 // of the users in the body being sent
	one    [1]int   // send's single user, without an allocation
}

func (g *generator) sender() *sender {
	return &sender{g: g, signer: NewSigner(g.traffic.Secret), req: &fasthttp.Request{}, resp: &fasthttp.Response{}}
}

// send posts user u's next event; on a 200 it counts as acknowledged and
// the user moves on, otherwise the same event is sent again next time, as
// Meta does.
func (s *sender) send(u int) bool {
	s.one[0] = u
	return s.sendBatch(s.one[:])
}

// sendBatch posts the next event of each of users in one body; a 200
// acknowledges them all, anything else none (Meta sends the body again).
func (s *sender) sendBatch(users []int) bool {
	s.seqs = s.seqs[:0]
	for _, u := range users {
		s.seqs = append(s.seqs, s.g.acked[u]+1)
	}
	s.body = s.g.traffic.Body(s.body[:0], users, s.seqs)
	if !s.post() {
		return false
	}
	for i, u := range users {
		s.g.acked[u] = s.seqs[i]
	}
	return true
}

// post sends s.body, signed, and reports whether it was answered 200.
func (s *sender) post() bool {
	s.req.Reset()
	s.req.SetRequestURI(s.g.uri)
	s.req.Header.SetMethod(fasthttp.MethodPost)
	s.req.Header.SetContentType("application/json")
	s.req.Header.SetBytesV("X-Hub-Signature-256", s.signer.Sign(s.body))
	s.req.SetBodyRaw(s.body)
	err := s.g.hc.DoTimeout(s.req, s.resp, 30*time.Second)
	if err == nil && s.resp.StatusCode() == fasthttp.StatusOK {
		return true
	}
	if err == nil {
		err = errors.New("status " + strconv.Itoa(s.resp.StatusCode()))
	}
	s.g.errs.Add(1)
	s.g.lastErr.Store(err.Error())
	return false
}

// totalAcked is every acknowledged event so far. Only call it between
// load phases.
func (g *generator) totalAcked() int64 {
	var n int64
	for _, a := range g.acked {
		n += int64(a)
	}
	return n
}

// closedLoop runs conns connections, each sending as fast as it is
// answered, over users [lo, hi) (each connection its own share of them),
// until stop is closed. acks counts acknowledged events as they happen.
func (g *generator) closedLoop(conns, lo, hi int, acks *atomic.Int64, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := g.sender()
			for {
				for u := lo + c; u < hi; u += conns {
					select {
					case <-stop:
						return
					default:
					}
					if s.send(u) {
						acks.Add(1)
					} else {
						time.Sleep(time.Millisecond) // a refusal must not spin
					}
				}
				if lo+c >= hi {
					<-stop
					return
				}
			}
		}()
	}
	wg.Wait()
}

// eachOnce sends one event for every user in [lo, hi) over conns
// connections, perBody users' events in each webhook body, retrying
// refusals, and returns when all are acknowledged.
func (g *generator) eachOnce(conns, perBody, lo, hi int) error {
	var wg sync.WaitGroup
	var failed atomic.Bool
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := g.sender()
			users := make([]int, 0, perBody)
			for first := lo + c*perBody; first < hi; first += conns * perBody {
				users = users[:0]
				for u := first; u < min(first+perBody, hi); u++ {
					users = append(users, u)
				}
				for tries := 0; !s.sendBatch(users); tries++ {
					if tries == 100 {
						failed.Store(true)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		return fmt.Errorf("events refused 100 times in a row: %v", g.lastErr.Load())
	}
	return nil
}

// sent is an event of the open-loop run: when it was meant to leave.
type sent struct {
	user     int
	seq      uint32
	intended int64 // unix nanoseconds
}

// openLoop sends rate events per second for warmup+measure, spread over
// conns connections, whatever the answers' speed: latency is counted from
// when each request was due, not from when it could be sent, so a stall
// shows in full (no coordinated omission). It returns the ack latencies
// and the events of the measured part.
func (g *generator) openLoop(rate, conns, users int, warmup, measure time.Duration) ([]time.Duration, []sent) {
	type job struct {
		u        int
		intended time.Time
		measured bool
	}
	queues := make([]chan job, conns)
	lat := make([][]time.Duration, conns)
	evs := make([][]sent, conns)
	var wg sync.WaitGroup
	for c := range queues {
		queues[c] = make(chan job, rate)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := g.sender()
			for j := range queues[c] {
				ok := s.send(j.u)
				if !j.measured {
					continue
				}
				lat[c] = append(lat[c], time.Since(j.intended))
				if ok {
					evs[c] = append(evs[c], sent{j.u, g.acked[j.u], j.intended.UnixNano()})
				}
			}
		}()
	}
	interval := time.Second / time.Duration(rate)
	total := int((warmup + measure) / interval)
	pace := newPacer()
	defer pace.release()
	start := time.Now()
	for k := 0; k < total; {
		pace.sleepUntil(start.Add(time.Duration(k) * interval))
		now := time.Now()
		for ; k < total; k++ {
			at := start.Add(time.Duration(k) * interval)
			if at.After(now) {
				break
			}
			u := k % users
			queues[u%conns] <- job{u: u, intended: at, measured: at.Sub(start) >= warmup}
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	var allLat []time.Duration
	var allSent []sent
	for c := range queues {
		allLat = append(allLat, lat[c]...)
		allSent = append(allSent, evs[c]...)
	}
	return allLat, allSent
}

// botClient asks the fake bot what it received.
type botClient struct{ hc *fasthttp.HostClient }

func newBotClient(addr string) *botClient {
	return &botClient{hc: &fasthttp.HostClient{Addr: addr, ReadTimeout: time.Minute, MaxResponseBodySize: 1 << 30}}
}

func (b *botClient) get(path string) ([]byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + b.hc.Addr + path)
	if err := b.hc.DoTimeout(req, resp, time.Minute); err != nil {
		return nil, fmt.Errorf("fake bot %s: %w", path, err)
	}
	return append([]byte(nil), resp.Body()...), nil
}

// count is how many events the bot has received.
func (b *botClient) count() (int64, error) { return b.number("/_count") }

// posts is how many webhook POSTs carried them.
func (b *botClient) posts() (int64, error) { return b.number("/_posts") }

func (b *botClient) number(path string) (int64, error) {
	body, err := b.get(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(body), 10, 64)
}

func (b *botClient) setFailing(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	_, err := b.get("/_fail?on=" + v)
	return err
}

func (b *botClient) records() ([]received, error) {
	body, err := b.get("/_records")
	if err != nil {
		return nil, err
	}
	return decodeRecords(body)
}

// waitCount waits until the bot has received at least want events, giving
// up after idle without progress. It returns how long it took.
func (b *botClient) waitCount(want int64, idle time.Duration) (time.Duration, error) {
	start := time.Now()
	last, lastChange := int64(-1), time.Now()
	for {
		n, err := b.count()
		if err != nil {
			return 0, err
		}
		if n >= want {
			return time.Since(start), nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > idle {
			return time.Since(start), fmt.Errorf("fake bot stuck at %d of %d events for %s", n, want, idle)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
