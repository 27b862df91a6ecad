package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/signature"
)

// The webhook listener's timeouts and connection cap, over loopback with
// the server NewServer builds. fasthttp's deadlines use real time, so the
// timeouts here are short and each test takes well under a second or two.

const (
	testReadTimeout = 300 * time.Millisecond
	testIdleTimeout = 300 * time.Millisecond
)

// listen serves an ingress on 127.0.0.1 with the given limits and returns
// its address.
func listen(t *testing.T, o ServerOptions) (string, *Ingress) {
	t.Helper()
	in, err := NewIngress(IngressOptions{Queue: acceptQueue{}, VerifyToken: "vt", Signer: signature.New([]byte("secret"))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := in.NewServer(o)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.ShutdownWithContext(ctx)
	})
	return ln.Addr().String(), in
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// signedPost is a whole webhook request as a client writes it.
func signedPost(body string) string {
	sig := signature.New([]byte("secret")).Sign256([]byte(body))
	return "POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Type: application/json\r\n" +
		signature.Header256 + ": " + sig + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// readAnswer reads one HTTP answer from r and returns its status.
func readAnswer(t *testing.T, c net.Conn, r *bufio.Reader) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		t.Fatalf("status line %q", line)
	}
	status, _ := strconv.Atoi(fields[1])
	length := 0
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading headers: %v", err)
		}
		if h == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if _, err := io.ReadFull(r, make([]byte, length)); err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return status
}

// closedSilently waits for the server to close c and checks it wrote
// nothing more; it returns how long that took.
func closedSilently(t *testing.T, c net.Conn, r *bufio.Reader) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(3 * time.Second))
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection is still open after %v", time.Since(start))
		}
		// A reset also closes without an answer.
	}
	if n != 0 {
		t.Fatalf("the server wrote %d unsolicited bytes before closing", n)
	}
	return time.Since(start)
}

// An idle kept-alive connection is closed at the idle timeout after its
// last answer, with not a byte written after that answer.
func TestIdleKeptAliveConnectionIsClosedWithoutAWord(t *testing.T) {
	addr, _ := listen(t, ServerOptions{ReadTimeout: testReadTimeout, IdleTimeout: testIdleTimeout})
	c := dial(t, addr)
	r := bufio.NewReader(c)
	io.WriteString(c, signedPost(oneEvent))
	if s := readAnswer(t, c, r); s != 200 {
		t.Fatalf("webhook: %d", s)
	}
	if waited := closedSilently(t, c, r); waited < testIdleTimeout/2 {
		t.Errorf("closed %v after the answer; the idle timeout is %v", waited, testIdleTimeout)
	}
}

// A connection opened and left silent, and one whose request stops
// mid-headers or mid-body, first or after an answered one, is cut off at
// the read timeout without an answer. (Before, fasthttp's error handler
// answered a silent new connection with a 400 nobody asked for.)
func TestStalledRequestIsCutOffWithoutAnAnswer(t *testing.T) {
	full := signedPost(oneEvent)
	for _, c := range []struct {
		name          string
		first, stalls string
	}{
		{"silent", "", ""},
		{"mid-headers", "", "POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Le"},
		{"mid-body", "", full[:len(full)-20]},
		{"mid-headers after an answer", full, "POST /webhook HTTP/1.1\r\nHo"},
		{"mid-body after an answer", full, full[:len(full)-1]},
		// Past fasthttp's 8 KiB read-ahead the handler reads the stream.
		{"mid-body past the read-ahead", "", strings.TrimSuffix(signedPost(bigEvent(20<<10)), "}]}]}")},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, in := listen(t, ServerOptions{ReadTimeout: testReadTimeout, IdleTimeout: time.Minute})
			conn := dial(t, addr)
			r := bufio.NewReader(conn)
			if c.first != "" {
				io.WriteString(conn, c.first)
				if s := readAnswer(t, conn, r); s != 200 {
					t.Fatalf("first webhook: %d", s)
				}
			}
			io.WriteString(conn, c.stalls)
			waited := closedSilently(t, conn, r)
			if waited < testReadTimeout/2 {
				t.Errorf("cut off after %v; the read timeout is %v", waited, testReadTimeout)
			}
			if n := refusedCount(t, in, "read_timeout"); n != 1 {
				t.Errorf("read_timeout refusals: %v; want 1", n)
			}
		})
	}
}

// A request read whole but unreadable is answered, and then closed:
// the client asked.
func TestUnreadableRequestIsAnswered(t *testing.T) {
	addr, _ := listen(t, ServerOptions{ReadTimeout: time.Second, MaxBodyBytes: 1 << 10})
	for _, c := range []struct {
		name, request string
		want          int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"headers over the buffer", "POST /webhook HTTP/1.1\r\nHost: baton\r\nX-Pad: " + strings.Repeat("p", 8<<10) + "\r\n\r\n", 431},
		// fasthttp reads ahead up to the limit (or 8 KiB) before the
		// handler sees the declared length.
		{"body over the limit", "POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Length: 4096\r\n\r\n" + strings.Repeat("x", 1<<10), 413},
		{"chunked body over the limit", "POST /webhook HTTP/1.1\r\nHost: baton\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("x", 2048) + "\r\n0\r\n\r\n", 413},
	} {
		conn := dial(t, addr)
		r := bufio.NewReader(conn)
		io.WriteString(conn, c.request)
		if s := readAnswer(t, conn, r); s != c.want {
			t.Errorf("%s: %d; want %d", c.name, s, c.want)
		}
	}
}

// Past max_conns a new connection is refused at once (a 503, or closed),
// and served again once a connection ends.
func TestConnectionsPastTheCapAreRefusedPromptly(t *testing.T) {
	const maxConns = 4
	addr, _ := listen(t, ServerOptions{ReadTimeout: time.Second, IdleTimeout: 5 * time.Second, MaxConns: maxConns})
	held := make([]net.Conn, maxConns)
	for i := range held {
		held[i] = dial(t, addr)
		r := bufio.NewReader(held[i])
		io.WriteString(held[i], signedPost(oneEvent))
		if s := readAnswer(t, held[i], r); s != 200 {
			t.Fatalf("connection %d: %d", i, s)
		}
	}
	extra := dial(t, addr)
	start := time.Now()
	io.WriteString(extra, signedPost(oneEvent))
	extra.SetReadDeadline(start.Add(time.Second))
	answer, err := io.ReadAll(extra)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection %d past the cap of %d: no answer after %v", maxConns+1, maxConns, time.Since(start))
	case len(answer) > 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 503"):
		t.Fatalf("connection past the cap answered %.40q; want a 503 or a close", answer)
	}
	held[0].Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c := dial(t, addr)
		r := bufio.NewReader(c)
		io.WriteString(c, signedPost(oneEvent))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if line, _ := r.ReadString('\n'); strings.HasPrefix(line, "HTTP/1.1 200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one of the held ones closed")
		}
		time.Sleep(20 * time.Millisecond) // the server notices the close on its own
	}
}

// bigEvent is a webhook of one text message of about size bytes.
func bigEvent(size int) string {
	return `{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"message":{"mid":"m.big","text":"` +
		strings.Repeat("x", size) + `"}}]}]}`
}

// Bodies past fasthttp's read-ahead and chunked bodies are read whole,
// and the connection serves the next request.
func TestLargeAndChunkedBodiesAreRead(t *testing.T) {
	addr, _ := listen(t, ServerOptions{ReadTimeout: time.Second})
	conn := dial(t, addr)
	r := bufio.NewReader(conn)
	body := bigEvent(100 << 10)
	chunked := "POST /webhook HTTP/1.1\r\nHost: baton\r\n" + signature.Header256 + ": " +
		signature.New([]byte("secret")).Sign256([]byte(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	for rest := body; rest != ""; {
		n := min(len(rest), 3000)
		chunked += strconv.FormatInt(int64(n), 16) + "\r\n" + rest[:n] + "\r\n"
		rest = rest[n:]
	}
	chunked += "0\r\n\r\n"
	for _, req := range []string{signedPost(body), chunked, signedPost(oneEvent)} {
		io.WriteString(conn, req)
		if s := readAnswer(t, conn, r); s != 200 {
			t.Fatalf("%.60q: %d; want 200", req, s)
		}
	}
}
