package web

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// ListenOnDevice opens the nodes' HTTP socket on addr bound to ifname
// (SO_BINDTODEVICE), like the DHCP and TFTP sockets: Linux follows the
// weak host model and would otherwise take a connection to the internal
// address that arrives on any interface, the public one included. A
// connection from the management node itself to that address arrives on
// loopback, not on ifname, so the management views get a listener of
// their own on 127.0.0.1 (bootsvc opens both).
func ListenOnDevice(ctx context.Context, ifname, addr string) (net.Listener, error) {
	var serr error
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			if ifname != "" {
				if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); serr != nil {
					serr = fmt.Errorf("binding to interface %s: %w", ifname, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for HTTP on %s (interface %s): %w", addr, ifname, err)
	}
	return ln, nil
}

// DefaultPerSourceConns caps the connections one address may hold open at
// once on the nodes' listener: a node needs a handful (iPXE, the live
// system's downloads, its callbacks), a flood from one host gets no more.
const DefaultPerSourceConns = 32

// LimitPerSource wraps ln so that each source address holds at most n
// connections at once; one more is closed as soon as it is accepted and
// counted in metrics (racker_http_connections_capped_total).
func LimitPerSource(ln net.Listener, n int, m *api.Metrics) net.Listener {
	return &capListener{Listener: ln, max: n, metrics: m, open: map[netip.Addr]int{}}
}

type capListener struct {
	net.Listener
	max     int
	metrics *api.Metrics
	mu      sync.Mutex
	open    map[netip.Addr]int
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := netip.Addr{}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			src = ap.Addr().Unmap()
		}
		l.mu.Lock()
		if l.open[src] >= l.max {
			l.mu.Unlock()
			c.Close()
			l.metrics.Capped()
			continue
		}
		l.open[src]++
		l.mu.Unlock()
		return &cappedConn{Conn: c, l: l, src: src}, nil
	}
}

type cappedConn struct {
	net.Conn
	l    *capListener
	src  netip.Addr
	once sync.Once
}

func (c *cappedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.src]--; c.l.open[c.src] <= 0 {
			delete(c.l.open, c.src)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
