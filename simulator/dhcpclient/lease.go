package dhcpclient

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
)

// Lease is the part of a DHCP ACK a simulated machine acts on.
type Lease struct {
	Addr    netip.Prefix // the address with the subnet's mask (/24 when the server names none)
	Router  netip.Addr   // the first router; invalid when there is none
	DNS     []netip.Addr
	Server  netip.Addr    // the server identifier; invalid when absent
	RenewIn time.Duration // T1: the server's, else half the lease; 0 for an infinite lease
	ValidIn time.Duration // the lease time; 0 for an infinite lease
}

// Infinite says whether the lease never expires (and so never renews).
func (l Lease) Infinite() bool { return l.ValidIn == 0 }

// LeaseOf extracts the address, router, DNS servers and timers from an ACK
// (pure, so it is tested with packets built by dhcpv4). An ACK without an
// address is an error: configuring 0.0.0.0 would break the link.
func LeaseOf(ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("DHCP ACK without an address (yiaddr %v)", ack.YourIPAddr)
	}
	ones := 24
	if m := ack.SubnetMask(); m != nil {
		ones, _ = m.Size()
	}
	l := Lease{Addr: netip.PrefixFrom(ip, ones)}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	valid := ack.IPAddressLeaseTime(time.Hour)
	if valid >= time.Duration(math.MaxUint32)*time.Second {
		return l, nil // infinite
	}
	l.ValidIn = valid
	l.RenewIn = ack.IPAddressRenewalTime(valid / 2)
	if l.RenewIn <= 0 || l.RenewIn >= valid {
		l.RenewIn = valid / 2
	}
	return l, nil
}

// Apply puts addr on link and, when router is valid, a default route via
// it. Both replace what is there, so applying a renewed lease again is
// harmless. It does not bring the link up: callers decide when a link is up.
func Apply(link netlink.Link, addr netip.Prefix, router netip.Addr) error {
	name := link.Attrs().Name
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("while adding %s to %s: %w", addr, name, err)
	}
	if router.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: router.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("while adding the default route via %s on %s: %w", router, name, err)
		}
	}
	return nil
}

// Remove takes addr off link and, when router is valid, the default route
// via it (a route already gone is not an error: removing the address takes
// it along).
func Remove(link netlink.Link, addr netip.Prefix, router netip.Addr) error {
	name := link.Attrs().Name
	if router.IsValid() {
		_ = netlink.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: router.AsSlice()})
	}
	if err := netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("while removing %s from %s: %w", addr, name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
