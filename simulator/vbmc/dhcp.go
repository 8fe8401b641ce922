package vbmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Backoff of a BMC that finds no DHCP server: it keeps asking, ever less
// often, as real BMCs do while the management node is still booting.
const (
	dhcpFirstRetry = time.Second
	dhcpMaxRetry   = 8 * time.Second
	// dhcpExchange bounds one DISCOVER/REQUEST exchange (nclient4 retries
	// inside it).
	dhcpExchange = 4 * time.Second
)

// leaseInfo is the part of a DHCP lease a BMC acts on.
type leaseInfo struct {
	addr    netip.Prefix
	router  netip.Addr
	renewIn time.Duration // T1
	validIn time.Duration // lease time
}

// leaseOf extracts the address and timers from an ACK (pure, tested with
// packets built by dhcpv4). An infinite lease never renews.
func leaseOf(ack *dhcpv4.DHCPv4) (leaseInfo, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return leaseInfo{}, fmt.Errorf("DHCP ACK without an address (yiaddr %v)", ack.YourIPAddr)
	}
	ones := 24
	if m := ack.SubnetMask(); m != nil {
		ones, _ = m.Size()
	}
	li := leaseInfo{addr: netip.PrefixFrom(ip, ones)}
	if rs := ack.Router(); len(rs) > 0 {
		li.router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	valid := ack.IPAddressLeaseTime(time.Hour)
	if valid >= time.Duration(math.MaxUint32)*time.Second {
		return li, nil // infinite
	}
	li.validIn = valid
	li.renewIn = ack.IPAddressRenewalTime(valid / 2)
	if li.renewIn <= 0 || li.renewIn >= valid {
		li.renewIn = valid / 2
	}
	return li, nil
}

// dhcpClient is the BMC's DHCP client on its interface (raw socket, so it
// works before the interface has an address).
type dhcpClient struct {
	iface string
	c     *nclient4.Client
	log   *slog.Logger
	lease *nclient4.Lease
}

func newDHCPClient(iface string, log *slog.Logger) (*dhcpClient, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("while opening a DHCP client on %s: %w", iface, err)
	}
	return &dhcpClient{iface: iface, c: c, log: log}, nil
}

func (d *dhcpClient) Close() error { return d.c.Close() }

// acquire runs DISCOVER/OFFER/REQUEST/ACK until a server answers or ctx
// ends, backing off between attempts.
func (d *dhcpClient) acquire(ctx context.Context) (leaseInfo, error) {
	wait := dhcpFirstRetry
	for attempt := 1; ; attempt++ {
		ectx, cancel := context.WithTimeout(ctx, dhcpExchange)
		l, err := d.c.Request(ectx)
		cancel()
		if err == nil {
			li, lerr := leaseOf(l.ACK)
			if lerr == nil {
				d.lease = l
				d.log.Info("DHCP lease", "iface", d.iface, "addr", li.addr.String(), "server", l.ACK.ServerIdentifier().String(), "valid", li.validIn.String())
				return li, nil
			}
			err = lerr
		}
		if ctx.Err() != nil {
			return leaseInfo{}, ctx.Err()
		}
		if attempt == 1 || attempt%10 == 0 {
			d.log.Warn("no DHCP lease yet, retrying", "iface", d.iface, "attempt", attempt, "next_in", wait.String(), "err", err)
		}
		select {
		case <-ctx.Done():
			return leaseInfo{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, dhcpMaxRetry)
	}
}

// renew asks the server that gave the lease to extend it.
func (d *dhcpClient) renew(ctx context.Context) (leaseInfo, error) {
	if d.lease == nil {
		return leaseInfo{}, errors.New("no lease to renew")
	}
	ectx, cancel := context.WithTimeout(ctx, dhcpExchange)
	defer cancel()
	l, err := d.c.Renew(ectx, d.lease)
	if err != nil {
		return leaseInfo{}, fmt.Errorf("while renewing the DHCP lease on %s: %w", d.iface, err)
	}
	li, err := leaseOf(l.ACK)
	if err != nil {
		return leaseInfo{}, err
	}
	d.lease = l
	return li, nil
}

// setAddress puts the leased (or static) address on the interface, brings
// it up and adds the default route the lease names.
func setAddress(iface string, p netip.Prefix, router netip.Addr) error {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("while looking up interface %s: %w", iface, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("while bringing %s up: %w", iface, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("while adding %s to %s: %w", p, iface, err)
	}
	if router.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: router.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("while adding the default route via %s on %s: %w", router, iface, err)
		}
	}
	return nil
}

// dropAddress removes an expired lease's address.
func dropAddress(iface string, p netip.Prefix) error {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("while looking up interface %s: %w", iface, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrDel(link, addr); err != nil {
		return fmt.Errorf("while removing %s from %s: %w", p, iface, err)
	}
	return nil
}

func macOf(iface string) net.HardwareAddr {
	i, err := net.InterfaceByName(iface)
	if err != nil {
		return nil
	}
	return i.HardwareAddr
}

// nclientNak is the server's "no" to a renewal: the lease is gone at once.
type nclientNak = nclient4.ErrNak
