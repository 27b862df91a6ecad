package proxy

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/signature"
)

// FuzzIngressPost posts signed bodies straight to the handler: every body
// is acknowledged (200) exactly when it parses, refused with 400
// otherwise, and the answer is one of a few fixed texts, never anything
// of the body.
func FuzzIngressPost(f *testing.F) {
	f.Add([]byte(oneEvent))
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{"x":[[[[[[[[`))
	f.Add([]byte(`{"object":"` + strings.Repeat("q", 300) + `","entry":[]}`))
	if file, err := os.Open("../testdata/webhooks/hostile.txt"); err == nil {
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			if line := sc.Text(); !strings.HasPrefix(line, "#") {
				f.Add([]byte(line))
			}
		}
		file.Close()
	}
	signer := signature.New([]byte("secret"))
	in, err := NewIngress(IngressOptions{Queue: acceptQueue{}, VerifyToken: "vt", Signer: signer})
	if err != nil {
		f.Fatal(err)
	}
	answers := map[string]int{"EVENT_RECEIVED": 200, "malformed webhook body": 400, "unknown webhook object": 400}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/webhook")
		ctx.Request.Header.Set(signature.Header256, signer.Sign256(body))
		ctx.Request.SetBody(body)
		in.Handle(&ctx)
		status, answer := ctx.Response.StatusCode(), string(ctx.Response.Body())
		if want, ok := answers[answer]; !ok || want != status {
			t.Fatalf("answered %d %.100q", status, answer)
		}
		if _, err := messenger.ParseShared(body); (err == nil) != (status == 200) {
			t.Fatalf("answered %d; the body parses with error %v", status, err)
		}
	})
}
