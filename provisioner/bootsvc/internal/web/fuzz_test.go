package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// FuzzCallbackAPI throws arbitrary callbacks and event queries at the
// handler, from a node's address, without its token: nothing may panic,
// nothing may be accepted, no node may move, and every answer is a
// refusal or a client error (run by make test, like the nodes.csv fuzzer).
func FuzzCallbackAPI(f *testing.F) {
	f.Add([]byte(`{"mac":"00:11:22:33:44:10","event":"installed"}`), "Bearer x", "127.0.0.1:5000", "0", "")
	f.Add([]byte(`{"mac":"00-11-22-33-44-20","event":"booted","message":"\u0000"}`), "", "127.0.0.2:68", "18446744073709551615", "zz")
	f.Add([]byte(`{"mac":"00:11:22:33:44:30","event":"failed","message":"`+strings.Repeat("x", 5000)+`"}`), "Bearer ", "[::1]:1", "-1", "0")
	f.Add([]byte(`[`), "Basic Zm9v", "garbage", "1e9", "e")
	r := newRig(f)
	before := map[string]api.Node{}
	for _, n := range r.srv.store.list() {
		before[n.PrimaryMAC] = n
	}
	f.Fuzz(func(t *testing.T, body []byte, auth, remote, after, epoch string) {
		h := r.srv.Handler()
		req := httptest.NewRequest("POST", "/api/v1/events", strings.NewReader(string(body)))
		req.RemoteAddr = remote
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.TokenHeader, auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusNoContent || rec.Code >= 500 {
			t.Fatalf("POST %q from %q with %q: %d %s", body, remote, auth, rec.Code, rec.Body)
		}
		q := url.Values{"after": {after}, "epoch": {epoch}, "wait": {"0s"}}
		req = httptest.NewRequest("GET", "/api/v1/events?"+q.Encode(), nil)
		req.RemoteAddr = remote
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET events after=%q epoch=%q from %q: %d %s", after, epoch, remote, rec.Code, rec.Body)
		}
		for _, n := range r.srv.store.list() {
			if b := before[n.PrimaryMAC]; n.Phase != b.Phase || n.Target != b.Target || n.InstallGeneration != b.InstallGeneration {
				t.Fatalf("a refused request moved %s: %+v → %+v", n.PrimaryMAC, b, n)
			}
		}
	})
}
