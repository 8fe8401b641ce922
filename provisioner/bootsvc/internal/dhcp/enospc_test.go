package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

// TestNoAckOnAFullDiskAndResumeWhenSpaceReturns: the state folder on a
// small tmpfs fills up. REQUESTs then get no ACK (the lease could not be
// made durable); once space returns the server ACKs again without a
// restart, and after one every ACKed lease is there.
func TestNoAckOnAFullDiskAndResumeWhenSpaceReturns(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0755"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: "+err.Error())
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	store, err := leases.Open(dir, leases.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var res []Reservation
	for i := 0; i < 120; i++ {
		res = append(res, Reservation{MAC: fmt.Sprintf("02:10:00:00:00:%02x", i), IP: netip.AddrFrom4([4]byte{172, 24, 213, byte(10 + i)}), Kind: KindNode})
	}
	srv, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store, Reservations: res})
	if err != nil {
		t.Fatal(err)
	}
	conn := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	ask := func(i int) bool { // DISCOVER, REQUEST: did an ACK come?
		t.Helper()
		mac, _ := net.ParseMAC(res[i].MAC)
		conn.in <- discover(t, mac).ToBytes()
		offer, err := dhcpv4.FromBytes(<-conn.out)
		if err != nil {
			t.Fatal(err)
		}
		conn.in <- request(t, offer).ToBytes()
		select {
		case b := <-conn.out:
			ack, err := dhcpv4.FromBytes(b)
			return err == nil && ack.MessageType() == dhcpv4.MessageTypeAck
		case <-time.After(300 * time.Millisecond): // an ACK takes a millisecond or two
			return false
		}
	}
	acked := map[string]bool{}
	for i := 0; i < 5; i++ {
		if !ask(i) {
			t.Fatalf("no ACK for %s with space on the disk", res[i].MAC)
		}
		acked[res[i].MAC] = true
	}
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	for {
		if _, err := f.Write(bytes.Repeat([]byte{'x'}, 512)); errors.Is(err, syscall.ENOSPC) {
			break
		}
	}
	f.Close()
	refused := 0
	for i := 5; i < 100 && refused < 5; i++ { // until a few were refused
		if ask(i) {
			acked[res[i].MAC] = true
		} else {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("every REQUEST was ACKed on a full disk")
	}
	os.Remove(filler)
	for i := 100; i < 110; i++ {
		if !ask(i) {
			t.Fatalf("no ACK for %s after space returned", res[i].MAC)
		}
		acked[res[i].MAC] = true
	}
	cancel()
	<-done
	store.Close()
	store, err = leases.Open(dir, leases.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for mac := range acked {
		if _, ok := store.Get(mac); !ok {
			t.Errorf("ACKed lease of %s lost (%d refused on the full disk)", mac, refused)
		}
	}
}
