package dhcpclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func TestLeaseOf(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0xaa, 0xbb, 0xcc}
	ack, err := dhcpv4.New(dhcpv4.WithHwAddr(mac),
		dhcpv4.WithYourIP(net.IPv4(172, 24, 213, 11)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(172, 24, 213, 1)),
		dhcpv4.WithDNS(net.IPv4(172, 24, 213, 2), net.IPv4(9, 9, 9, 9)),
		dhcpv4.WithServerIP(net.IPv4(172, 24, 213, 2)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(172, 24, 213, 2))),
		dhcpv4.WithLeaseTime(600),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if err != nil {
		t.Fatal(err)
	}
	li, err := LeaseOf(ack)
	if err != nil {
		t.Fatal(err)
	}
	if li.Addr != netip.MustParsePrefix("172.24.213.11/24") || li.Router != netip.MustParseAddr("172.24.213.1") {
		t.Fatalf("lease = %+v", li)
	}
	if fmt.Sprint(li.DNS) != "[172.24.213.2 9.9.9.9]" || li.Server != netip.MustParseAddr("172.24.213.2") {
		t.Fatalf("DNS %v server %v, want [172.24.213.2 9.9.9.9] and 172.24.213.2", li.DNS, li.Server)
	}
	if li.ValidIn != 10*time.Minute || li.RenewIn != 5*time.Minute || li.Infinite() {
		t.Fatalf("timers: valid %v renew %v, want 10m and 5m (T1 = half)", li.ValidIn, li.RenewIn)
	}

	ack.UpdateOption(dhcpv4.OptRenewTimeValue(60 * time.Second))
	if li, _ := LeaseOf(ack); li.RenewIn != time.Minute {
		t.Fatalf("server T1 ignored: %v", li.RenewIn)
	}
	ack.UpdateOption(dhcpv4.OptRenewTimeValue(20 * time.Minute))
	if li, _ := LeaseOf(ack); li.RenewIn != 5*time.Minute {
		t.Fatalf("a T1 past the lease time was taken: %v", li.RenewIn)
	}
	ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(0xffffffff * time.Second))
	if li, _ := LeaseOf(ack); li.ValidIn != 0 || li.RenewIn != 0 || !li.Infinite() {
		t.Fatalf("infinite lease has a timer: %+v", li)
	}

	// No mask and no router: a /24, and no default route.
	bare, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 3)),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if err != nil {
		t.Fatal(err)
	}
	if li, err := LeaseOf(bare); err != nil || li.Addr != netip.MustParsePrefix("10.1.2.3/24") || li.Router.IsValid() || li.ValidIn != time.Hour {
		t.Fatalf("bare ACK = %+v, %v; want 10.1.2.3/24, no router, the 1h default", li, err)
	}

	ack.YourIPAddr = net.IPv4zero
	if _, err := LeaseOf(ack); err == nil {
		t.Fatal("ACK without an address accepted")
	}
}

func TestBackoff(t *testing.T) {
	doubling := Backoff{First: time.Second, Max: 8 * time.Second}
	var got []time.Duration
	for w, i := doubling.First, 0; i < 6; i++ {
		got = append(got, w)
		w = doubling.Next(w)
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 8s 8s]" {
		t.Fatalf("doubling backoff = %v", got)
	}
	fixed := Backoff{First: time.Second}
	if fixed.Next(time.Second) != time.Second || fixed.Next(4*time.Second) != time.Second {
		t.Fatal("a fixed pace changed")
	}
}

func TestIsNak(t *testing.T) {
	nak := fmt.Errorf("while renewing: %w", &nclient4.ErrNak{})
	if !IsNak(nak) || IsNak(errors.New("timeout")) || IsNak(nil) {
		t.Fatal("IsNak misreads its error")
	}
}
