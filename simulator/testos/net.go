package testos

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// bringUpNetwork configures every Ethernet interface by DHCP, like a node's
// OS does. It returns once the primary interface (the one with primaryMAC,
// else the first) has an address; the others keep trying in the background
// for a while (the simulator's public bridge may have no DHCP server) and
// never get the default route.
func bringUpNetwork(ctx context.Context, log *slog.Logger, primaryMAC string) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	links, err := waitForEthernet(20 * time.Second)
	if err != nil {
		return err
	}
	primary := links[0]
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), primaryMAC) {
			primary = l
		}
	}
	done := make(chan error, 1)
	for _, l := range links {
		if err := netlink.LinkSetUp(l); err != nil {
			log.Warn("cannot bring the link up", "iface", l.Attrs().Name, "err", err)
			continue
		}
		isPrimary := l.Attrs().Index == primary.Attrs().Index
		go func() {
			dctx, cancel := ctx, context.CancelFunc(func() {})
			if !isPrimary {
				dctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
			}
			defer cancel()
			err := dhcpLoop(dctx, log, l, isPrimary)
			if isPrimary {
				done <- err
			}
		}()
	}
	return <-done
}

// waitForEthernet waits for the NIC drivers' probes to create interfaces and
// returns the Ethernet ones in interface-index order (NIC 1 first).
func waitForEthernet(timeout time.Duration) ([]netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		all, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("while listing network interfaces: %w", err)
		}
		var eth []netlink.Link
		for _, l := range all {
			if l.Type() == "device" && len(l.Attrs().HardwareAddr) == 6 && l.Attrs().Name != "lo" {
				eth = append(eth, l)
			}
		}
		if len(eth) > 0 {
			sort.Slice(eth, func(i, j int) bool { return eth[i].Attrs().Index < eth[j].Attrs().Index })
			return eth, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no Ethernet interface appeared within %s (virtio_net loaded?)", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dhcpLoop asks for a lease until one comes (as real OSes keep trying) or ctx
// ends, then configures the address (and, on the primary, the default route
// and DNS).
func dhcpLoop(ctx context.Context, log *slog.Logger, l netlink.Link, primary bool) error {
	name := l.Attrs().Name
	for attempt := 1; ; attempt++ {
		lease, err := dhcpOnce(ctx, name)
		if err == nil {
			return configure(log, l, lease.ACK, primary)
		}
		if ctx.Err() != nil {
			log.Info("no DHCP lease", "iface", name, "err", err)
			return fmt.Errorf("no DHCP lease on %s: %w", name, err)
		}
		if primary && attempt%3 == 1 {
			log.Info("still waiting for a DHCP lease", "iface", name, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func dhcpOnce(ctx context.Context, iface string) (*nclient4.Lease, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
	if err != nil {
		return nil, fmt.Errorf("while opening a DHCP socket on %s: %w", iface, err)
	}
	defer c.Close()
	return c.Request(ctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("testos")))
}

func configure(log *slog.Logger, l netlink.Link, ack *dhcpv4.DHCPv4, primary bool) error {
	name := l.Attrs().Name
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.CIDRMask(24, 32)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ack.YourIPAddr, Mask: mask}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("while adding %s to %s: %w", addr.IPNet, name, err)
	}
	ones, _ := mask.Size()
	attrs := []any{"iface", name, "mac", l.Attrs().HardwareAddr.String(), "ip", fmt.Sprintf("%s/%d", ack.YourIPAddr, ones), "server", ack.ServerIdentifier()}
	if routers := ack.Router(); primary && len(routers) > 0 {
		route := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: routers[0]}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("while adding the default route via %s on %s: %w", routers[0], name, err)
		}
		attrs = append(attrs, "gateway", routers[0])
	}
	if dns := ack.DNS(); primary && len(dns) > 0 {
		var b strings.Builder
		for _, d := range dns {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		_ = os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644)
	}
	log.Info("DHCP lease", attrs...)
	return nil
}
