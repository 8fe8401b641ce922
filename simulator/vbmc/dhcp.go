package vbmc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/simulator/dhcpclient"
)

// The BMC's DHCP pace: a BMC that finds no DHCP server keeps asking, ever
// less often, as real BMCs do while the management node is still booting.
var (
	dhcpBackoff = dhcpclient.Backoff{First: time.Second, Max: 8 * time.Second}
	dhcpOptions = dhcpclient.Options{
		Timeout: time.Second, Retries: 3,
		// One DISCOVER/REQUEST exchange (nclient4 retries inside it).
		Exchange: 4 * time.Second,
	}
)

// acquire asks for a lease until a server answers or ctx ends, logging the
// first failed attempt and every tenth.
func acquire(ctx context.Context, dc *dhcpclient.Client, log *slog.Logger) (dhcpclient.Lease, error) {
	iface := dc.Interface()
	li, err := dc.Acquire(ctx, dhcpBackoff, func(attempt int, next time.Duration, err error) {
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("no DHCP lease yet, retrying", "iface", iface, "attempt", attempt, "next_in", next.String(), "err", err)
		}
	})
	if err != nil {
		return li, err
	}
	log.Info("DHCP lease", "iface", iface, "addr", li.Addr.String(), "server", li.Server.String(), "valid", li.ValidIn.String())
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
	return dhcpclient.Apply(link, p, router)
}

// dropAddress removes an expired lease's address.
func dropAddress(iface string, p netip.Prefix) error {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("while looking up interface %s: %w", iface, err)
	}
	return dhcpclient.Remove(link, p, netip.Addr{})
}

func macOf(iface string) net.HardwareAddr {
	i, err := net.InterfaceByName(iface)
	if err != nil {
		return nil
	}
	return i.HardwareAddr
}
