package testos

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// network is the node's IPv4 configuration: DHCP on every Ethernet
// interface (renewed at half the lease time), plus the static addresses of
// systemd-networkd files once a config has written them.
type network struct {
	log *slog.Logger
}

func newNetwork(log *slog.Logger) *network { return &network{log: log} }

// up configures every Ethernet interface by DHCP, like a node's OS does. It
// returns once the primary interface (the one with primaryMAC, else the
// first) has an address; the others keep trying in the background for a
// while (the simulator's public bridge may have no DHCP server) and never get
// the default route.
func (n *network) up(ctx context.Context, primaryMAC string) error {
	log := n.log
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
			lease, err := n.dhcpLoop(dctx, l, isPrimary)
			if isPrimary {
				done <- err
			}
			if err == nil {
				n.renew(ctx, l, lease, isPrimary)
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
func (n *network) dhcpLoop(ctx context.Context, l netlink.Link, primary bool) (*nclient4.Lease, error) {
	log := n.log
	name := l.Attrs().Name
	for attempt := 1; ; attempt++ {
		lease, err := dhcpOnce(ctx, name)
		if err == nil {
			return lease, configure(log, l, lease.ACK, primary)
		}
		if ctx.Err() != nil {
			log.Info("no DHCP lease", "iface", name, "err", err)
			return nil, fmt.Errorf("no DHCP lease on %s: %w", name, err)
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

// renew keeps a lease alive: a REQUEST at half the lease time (T1), a new
// DISCOVER when the server does not answer.
func (n *network) renew(ctx context.Context, l netlink.Link, lease *nclient4.Lease, primary bool) {
	name := l.Attrs().Name
	for {
		t1 := lease.ACK.IPAddressLeaseTime(time.Hour) / 2
		if t1 < 10*time.Second {
			t1 = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(t1):
		}
		c, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
		if err != nil {
			n.log.Warn("cannot renew the DHCP lease", "iface", name, "err", err)
			continue
		}
		next, err := c.Renew(ctx, lease)
		if err != nil {
			next, err = c.Request(ctx)
		}
		c.Close()
		if err != nil {
			n.log.Warn("DHCP renewal failed; retrying at the next T1", "iface", name, "err", err)
			continue
		}
		if !next.ACK.YourIPAddr.Equal(lease.ACK.YourIPAddr) {
			_ = netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: lease.ACK.YourIPAddr, Mask: lease.ACK.SubnetMask()}})
		}
		lease = next
		if err := configure(n.log, l, lease.ACK, primary); err != nil {
			n.log.Warn("renewed lease not configured", "iface", name, "err", err)
		}
	}
}

// applyNetworkFiles applies the .network files under dir (in name order; the
// first file matching a link wins, as in networkd): their addresses and
// their gateway as the default route.
//
// One deliberate difference from networkd: with DHCP=no networkd would drop
// the DHCP lease, the test OS keeps it (and keeps renewing it). In a rack the
// static address is the node's fixed lease anyway; in tests that run the
// test OS on QEMU's user network (10.0.2.0/24) against a plan for another
// subnet, the lease is the only way back to Racker.
func (n *network) applyNetworkFiles(dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.network"))
	if len(paths) == 0 {
		return
	}
	sort.Strings(paths)
	var files []NetworkFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			n.log.Warn("cannot read a network file", "file", p, "err", err)
			continue
		}
		f, err := ParseNetworkFile(filepath.Base(p), string(b))
		if err != nil {
			n.log.Warn("network file not applied", "err", err)
			continue
		}
		files = append(files, f)
	}
	links, err := netlink.LinkList()
	if err != nil {
		n.log.Warn("cannot list links", "err", err)
		return
	}
	for _, l := range links {
		name, mac := l.Attrs().Name, l.Attrs().HardwareAddr.String()
		if name == "lo" {
			continue
		}
		for _, f := range files {
			if !f.Matches(name, mac) {
				continue
			}
			if err := n.applyNetworkFile(l, f); err != nil {
				n.log.Warn("network file not fully applied", "file", f.Name, "iface", name, "err", err)
			}
			break
		}
	}
}

func (n *network) applyNetworkFile(l netlink.Link, f NetworkFile) error {
	name := l.Attrs().Name
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("while bringing %s up: %w", name, err)
	}
	for _, p := range f.Addresses {
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("while adding %s: %w", p, err)
		}
	}
	for _, gw := range f.Gateways {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("while adding the default route via %s: %w", gw, err)
		}
	}
	n.log.Info("network file applied", "file", f.Name, "iface", name, "addresses", fmt.Sprint(f.Addresses), "dhcp", f.DHCP)
	return nil
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
