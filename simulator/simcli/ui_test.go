package simcli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
)

// racker-sim ui's forwarder reaches a server on a namespace's loopback
// (where racker serve's rack view listens in the management node) from
// this machine's loopback, and says so plainly when nothing listens there.
func TestForwarderReachesNamespaceLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	ns := fmt.Sprintf("uifw%d", os.Getpid()%100000)
	netenv.ForTest(t, netenv.Topology{Namespaces: []string{ns}})
	var inside net.Listener
	if err := netenv.Do(ns, func() (err error) { inside, err = net.Listen("tcp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	go http.Serve(inside, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "rack view from inside") }))

	get := func(to string) (int, string) {
		t.Helper()
		f, err := newForwarder(netenv.NamespacePath(ns), to, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Serve(ctx, ln) }()
		defer func() { cancel(); <-done; f.Close() }()
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(inside.Addr().String()); code != 200 || body != "rack view from inside" {
		t.Errorf("through the forwarder: %d %q", code, body)
	}
	if code, body := get("127.0.0.1:1"); code != http.StatusBadGateway || !strings.Contains(body, "nothing answers at 127.0.0.1:1 in the management node") {
		t.Errorf("nothing listening: %d %q", code, body)
	}
	if _, err := newForwarder("/run/netns/no-such-ns-for-ui", "127.0.0.1:8088", slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "is the rack up?") {
		t.Errorf("a missing namespace: %v", err)
	}
}
