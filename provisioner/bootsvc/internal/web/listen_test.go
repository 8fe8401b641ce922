package web

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNodesListenerCapsSourcesAndCutsSlowClients: the nodes' listener as
// bootsvc builds it (LimitPerSource around the socket, Serve's timeouts).
// One source gets at most its cap of connections at once, another source
// is not affected, a closed connection frees its slot, and a client that
// never finishes its request header is cut off after readHeaderTimeout.
func TestNodesListenerCapsSourcesAndCutsSlowClients(t *testing.T) {
	r := newRig(t)
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const perSource = 3
	ln := LimitPerSource(raw, perSource, r.srv.Metrics())
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })

	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp4", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// answers says whether the server answers a request on c (a capped
	// connection is closed as soon as it is accepted: EOF or a reset).
	answers := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.HasPrefix(line, "HTTP/1.1 200")
	}

	var held []net.Conn
	for i := 0; i < perSource; i++ {
		c := dial("127.0.0.9")
		if !answers(c) {
			t.Fatalf("connection %d of %d from one source was not served", i+1, perSource)
		}
		held = append(held, c) // keep-alive: the slot stays taken
	}
	if answers(dial("127.0.0.9")) {
		t.Errorf("connection %d from one source was served; the cap is %d", perSource+1, perSource)
	}
	if _, m := r.get("/metrics"); !strings.Contains(m, "racker_http_connections_capped_total 1") {
		t.Errorf("the capped connection is not counted:\n%s", grepLines(m, "capped"))
	}
	if !answers(dial("127.0.0.10")) {
		t.Error("another source was refused while the first one was at its cap")
	}
	held[0].Close()
	freed := false
	for deadline := time.Now().Add(5 * time.Second); !freed && time.Now().Before(deadline); {
		freed = answers(dial("127.0.0.9"))
		if !freed {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !freed {
		t.Error("a closed connection did not free its source's slot")
	}

	// A slow client: half a request header, then nothing.
	slow := dial("127.0.0.11")
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	slow.SetReadDeadline(start.Add(readHeaderTimeout + 10*time.Second))
	io.Copy(io.Discard, slow) // returns when the server closes the connection
	if took := time.Since(start); took > readHeaderTimeout+5*time.Second {
		t.Errorf("an unfinished request header held its connection %v (readHeaderTimeout %v)", took, readHeaderTimeout)
	}
}

// A host that holds connections without using them gets them closed: a
// keep-alive connection left idle after idleTimeout, a request whose body
// never finishes after readTimeout; either way its source's slot under
// the per-source cap is free again.
func TestIdleAndUnfinishedRequestsAreClosed(t *testing.T) {
	defer func(idle, read time.Duration) { idleTimeout, readTimeout = idle, read }(idleTimeout, readTimeout)
	idleTimeout, readTimeout = time.Second, 2*time.Second
	r := newRig(t)
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitPerSource(raw, 1, r.srv.Metrics())
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	dial := func() net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.12")}}
		c, err := d.Dial("tcp4", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedWithin reads c until the server closes it, and says how long
	// that took (the test's own bound, 10 s, is far beyond the timeouts).
	closedWithin := func(c net.Conn) time.Duration {
		start := time.Now()
		c.SetReadDeadline(start.Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("the server did not close the connection: %v", err)
		}
		return time.Since(start)
	}

	idle := dial()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if took := closedWithin(idle); took < idleTimeout/2 || took > idleTimeout+3*time.Second {
		t.Errorf("an idle keep-alive connection was closed after %v (idleTimeout %v)", took, idleTimeout)
	}

	unfinished := dial() // the only slot of its source: the idle one's is free
	if _, err := io.WriteString(unfinished, "POST /api/v1/nodes/52:54:00:00:00:01/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	if took := closedWithin(unfinished); took > readTimeout+3*time.Second {
		t.Errorf("a request whose body never finished held its connection %v (readTimeout %v)", took, readTimeout)
	}

	again := dial()
	again.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(again, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if line, err := bufio.NewReader(again).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Errorf("the source's slot was not freed: %q %v", line, err)
	}
}
