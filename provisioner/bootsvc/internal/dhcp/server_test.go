package dhcp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

// fakeConn is a PacketConn in memory (a fake, for this unit test only; the
// integration tests use real sockets and busybox udhcpc): reads come from
// in, writes go to out.
type fakeConn struct {
	in       chan []byte
	out      chan []byte
	deadline chan struct{}
	once     sync.Once
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), out: make(chan []byte, 16), deadline: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), &net.UDPAddr{IP: net.IPv4zero, Port: 68}, nil
	case <-c.deadline:
		return 0, nil, os.ErrDeadlineExceeded
	}
}
func (c *fakeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.out <- append([]byte(nil), b...)
	return len(b), nil
}
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.UDPAddr{Port: 67} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error {
	c.once.Do(func() { close(c.deadline) })
	return nil
}

func TestServerDropsMalformedPacketsAndAcksDurably(t *testing.T) {
	dir := t.TempDir()
	store, err := leases.Open(dir, leases.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var mu sync.Mutex
	var events []api.Event
	srv, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store,
		Reservations: []Reservation{{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("172.24.213.2"), Kind: KindNode}},
		Recorder:     api.RecorderFunc(func(e api.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })})
	if err != nil {
		t.Fatal(err)
	}
	conn := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()

	conn.in <- []byte{1, 2, 3}                // too short
	conn.in <- discover(t, strange).ToBytes() // unknown: no answer
	conn.in <- discover(t, nodeMAC).ToBytes() // planned: OFFER
	offer, err := dhcpv4.FromBytes(<-conn.out)
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "172.24.213.2" {
		t.Fatalf("offer = %v, %v", offer, err)
	}
	conn.in <- request(t, offer, pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016")...).ToBytes()
	ack, err := dhcpv4.FromBytes(<-conn.out)
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("ack = %v, %v", ack, err)
	}
	// The ACK left only after the lease was durable: another process sees it.
	if ip, ok, err := leases.Lookup(dir, "00:11:22:33:44:10"); err != nil || !ok || ip.String() != "172.24.213.2" {
		t.Fatalf("lease after ACK: %v %v %v", ip, ok, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	kinds := map[api.EventKind]string{}
	typed := map[api.EventKind]api.Event{}
	for _, e := range events {
		kinds[e.Kind] = e.MAC + " " + e.Message
		typed[e.Kind] = e
	}
	// The client architecture is a typed field: [7] from the UEFI request,
	// none from the client that sent no option 93.
	if e := typed[api.KindDHCP]; !slices.Equal(e.ClientArch, []uint16{7}) || !e.UEFI() {
		t.Errorf("dhcp event client_arch = %v, want [7] (UEFI)", e.ClientArch)
	}
	if e := typed[api.KindMachineSeen]; e.ClientArch != nil || e.UEFI() {
		t.Errorf("machine_seen client_arch = %v, want none", e.ClientArch)
	}
	if !strings.HasPrefix(kinds[api.KindMachineSeen], "02:aa:bb:cc:dd:ee") {
		t.Errorf("no machine_seen for the unknown MAC: %v", events)
	}
	if !strings.HasPrefix(kinds[api.KindDHCP], "00:11:22:33:44:10 ip=172.24.213.2") {
		t.Errorf("no dhcp event for the lease: %v", events)
	}
	select {
	case p := <-conn.out:
		t.Errorf("unexpected extra reply %x", p)
	default:
	}
}

func openStore(t *testing.T) *leases.Store {
	t.Helper()
	s, err := leases.Open(t.TempDir(), leases.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
