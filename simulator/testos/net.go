package testos

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/simulator/dhcpclient"
)

// The test OS's DHCP pace, as an initramfs client: a DHCP exchange waits
// 2 s for each packet and sends it twice, and a failed one is tried again
// a second later, for as long as the link's client runs.
var (
	dhcpOptions = dhcpclient.Options{Timeout: 2 * time.Second, Retries: 2, VendorClass: "testos"}
	dhcpBackoff = dhcpclient.Backoff{First: time.Second}
)

// network is the node's IPv4 configuration, in two stages as on Flatcar:
// the first boot's initramfs runs DHCP on every Ethernet link so Ignition
// can fetch its config (dhcpAll); then systemd-networkd configures each
// link from the .network files (applyNetworkFiles): static addresses, and a
// DHCP client only where the file (or Flatcar's default file, for links no
// file claims) asks for one.
type network struct {
	log     *slog.Logger
	primary string // MAC whose lease may set the default route and DNS

	mu    sync.Mutex
	dhcps map[string]*dhcpClient // by interface name
}

// dhcpClient is one running DHCP client and the lease it configured.
type dhcpClient struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the client stopped
	got    chan struct{} // closed at the first lease
	mu     sync.Mutex
	lease  *dhcpclient.Lease
}

func newNetwork(log *slog.Logger) *network {
	return &network{log: log, dhcps: map[string]*dhcpClient{}}
}

// links brings lo up and answers the Ethernet interfaces, NIC 1 first; the
// primary one is the one with primaryMAC, else the first.
func (n *network) links(primaryMAC string) ([]netlink.Link, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	links, err := waitForEthernet(20 * time.Second)
	if err != nil {
		return nil, err
	}
	n.primary = strings.ToLower(links[0].Attrs().HardwareAddr.String())
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), primaryMAC) {
			n.primary = strings.ToLower(primaryMAC)
		}
	}
	return links, nil
}

// dhcpAll starts a DHCP client on every Ethernet link, as the initramfs
// does before Ignition, and returns once the primary link has a lease.
func (n *network) dhcpAll(ctx context.Context, primaryMAC string) error {
	links, err := n.links(primaryMAC)
	if err != nil {
		return err
	}
	var primary *dhcpClient
	for _, l := range links {
		if err := netlink.LinkSetUp(l); err != nil {
			n.log.Warn("cannot bring the link up", "iface", l.Attrs().Name, "err", err)
			continue
		}
		c := n.startDHCP(ctx, l)
		if n.isPrimary(l) {
			primary = c
		}
	}
	if primary == nil {
		return fmt.Errorf("the primary link is not up")
	}
	select {
	case <-primary.got:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *network) isPrimary(l netlink.Link) bool {
	return strings.EqualFold(l.Attrs().HardwareAddr.String(), n.primary)
}

// startDHCP runs a DHCP client on a link until stopDHCP (or ctx) ends it:
// it asks until a lease comes (as real clients keep trying), configures it,
// and renews it at T1. Secondary links give up after two minutes, since the
// simulator's public network may have no DHCP server.
func (n *network) startDHCP(ctx context.Context, l netlink.Link) *dhcpClient {
	name := l.Attrs().Name
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.dhcps[name]; ok {
		return c
	}
	primary := n.isPrimary(l)
	cctx, cancel := context.WithCancel(ctx)
	if !primary {
		cctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	}
	c := &dhcpClient{cancel: cancel, done: make(chan struct{}), got: make(chan struct{})}
	n.dhcps[name] = c
	go func() {
		defer close(c.done)
		cl, err := dhcpclient.Open(name, dhcpOptions)
		if err != nil {
			n.log.Warn("no DHCP client", "iface", name, "err", err)
			return
		}
		defer cl.Close()
		lease, err := n.dhcpLoop(cctx, cl, l, primary)
		if err != nil {
			return
		}
		c.setLease(lease)
		close(c.got)
		n.renew(cctx, cl, l, c, primary)
	}()
	return c
}

func (c *dhcpClient) setLease(l dhcpclient.Lease) {
	c.mu.Lock()
	c.lease = &l
	c.mu.Unlock()
}

func (c *dhcpClient) current() *dhcpclient.Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

// stopDHCP stops a link's DHCP client and removes what its lease
// configured (the address and the default route through the lease's
// router), unless keep holds that address: networkd with DHCP=no keeps no
// lease on the link. It says whether a lease was dropped.
func (n *network) stopDHCP(l netlink.Link, keep []netip.Prefix) bool {
	name := l.Attrs().Name
	n.mu.Lock()
	c, ok := n.dhcps[name]
	delete(n.dhcps, name)
	n.mu.Unlock()
	if !ok {
		return false
	}
	c.cancel()
	<-c.done
	lease := c.current()
	if lease == nil {
		return false
	}
	ip := lease.Addr.Addr()
	for _, p := range keep {
		if p.Addr() == ip {
			return true
		}
	}
	if err := dhcpclient.Remove(l, lease.Addr, lease.Router); err != nil {
		n.log.Warn("could not remove the DHCP address", "iface", name, "ip", ip, "err", err)
	}
	return true
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

// dhcpLoop asks for a lease until one comes or ctx ends, then configures
// the address (and, on the primary, the default route and DNS).
func (n *network) dhcpLoop(ctx context.Context, cl *dhcpclient.Client, l netlink.Link, primary bool) (dhcpclient.Lease, error) {
	log := n.log
	name := l.Attrs().Name
	lease, err := cl.Acquire(ctx, dhcpBackoff, func(attempt int, _ time.Duration, err error) {
		if primary && attempt%3 == 1 {
			log.Info("still waiting for a DHCP lease", "iface", name, "attempt", attempt, "err", err)
		}
	})
	if err != nil {
		if primary {
			log.Info("no DHCP lease", "iface", name, "err", err)
		}
		return lease, err
	}
	return lease, configure(log, l, lease, primary)
}

// renew keeps a lease alive: a REQUEST at half the lease time (T1), a new
// DISCOVER when the server does not answer.
func (n *network) renew(ctx context.Context, cl *dhcpclient.Client, l netlink.Link, c *dhcpClient, primary bool) {
	name := l.Attrs().Name
	for {
		lease := c.current()
		if lease.Infinite() {
			<-ctx.Done()
			return
		}
		t1 := max(lease.ValidIn/2, 10*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(t1):
		}
		next, err := cl.Renew(ctx)
		if err != nil {
			next, err = cl.Request(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Warn("DHCP renewal failed; retrying at the next T1", "iface", name, "err", err)
			continue
		}
		if next.Addr.Addr() != lease.Addr.Addr() {
			_ = dhcpclient.Remove(l, lease.Addr, netip.Addr{})
		}
		c.setLease(next)
		if err := configure(n.log, l, next, primary); err != nil {
			n.log.Warn("renewed lease not configured", "iface", name, "err", err)
		}
	}
}

// readNetworkFiles parses the .network files under dir in name order.
func readNetworkFiles(dir string) []NetworkFile {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.network"))
	sort.Strings(paths)
	var files []NetworkFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		f := ParseNetworkFile(filepath.Base(p), string(b))
		if err != nil {
			f.Err = fmt.Errorf("%s: %w", f.Name, err)
		}
		files = append(files, f)
	}
	return files
}

// applyNetworkFiles is systemd-networkd starting in the booted system: each
// Ethernet link is configured by PlanLink from the .network files under
// dir. It answers whether every link was configured as planned; a failed
// link is logged as an error.
func (n *network) applyNetworkFiles(ctx context.Context, dir, primaryMAC string) bool {
	files := readNetworkFiles(dir)
	links, err := n.links(primaryMAC)
	if err != nil {
		n.log.Error("systemd-networkd: no links", "err", err)
		return false
	}
	ok := true
	var waitFor []*dhcpClient
	static := false
	for _, l := range links {
		name := l.Attrs().Name
		plan := PlanLink(files, name, l.Attrs().HardwareAddr.String())
		if plan.Err != nil {
			dropped := n.stopDHCP(l, nil)
			n.log.Error("systemd-networkd: link failed: its .network file is invalid, so nothing is configured on it",
				"iface", name, "file", plan.File, "err", plan.Err, "dhcp_lease_dropped", dropped)
			ok = false
			continue
		}
		if err := netlink.LinkSetUp(l); err != nil {
			n.log.Error("systemd-networkd: cannot bring the link up", "iface", name, "err", err)
			ok = false
			continue
		}
		dropped := false
		if !plan.DHCP {
			dropped = n.stopDHCP(l, plan.Addresses)
		}
		if err := n.setStatic(l, plan); err != nil {
			n.log.Error("systemd-networkd: link failed", "iface", name, "file", plan.File, "err", err)
			ok = false
			continue
		}
		static = static || len(plan.Addresses) > 0
		file := plan.File
		if file == "" {
			file = "zz-default.network (Flatcar's default: DHCP)"
		}
		if plan.DHCP {
			waitFor = append(waitFor, n.startDHCP(ctx, l))
			n.log.Info("network file applied", "file", file, "iface", name, "addresses", fmt.Sprint(plan.Addresses), "dhcp", "yes")
			continue
		}
		n.log.Info("network file applied", "file", file, "iface", name, "addresses", fmt.Sprint(plan.Addresses), "dhcp", "no",
			"dhcp_lease_dropped", dropped)
	}
	// network-online.target: a static address is online at once; else
	// wait (like systemd-networkd-wait-online --any) for a lease.
	if !static && len(waitFor) > 0 {
		n.waitAny(ctx, waitFor, 2*time.Minute)
	}
	return ok
}

func (n *network) setStatic(l netlink.Link, plan LinkPlan) error {
	for _, p := range plan.Addresses {
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("while adding %s: %w", p, err)
		}
	}
	for _, gw := range plan.Gateways {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("while adding the default route via %s: %w", gw, err)
		}
	}
	return nil
}

func (n *network) waitAny(ctx context.Context, clients []*dhcpClient, timeout time.Duration) {
	any := make(chan struct{}, len(clients))
	for _, c := range clients {
		go func() {
			select {
			case <-c.got:
				any <- struct{}{}
			case <-c.done:
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-any:
	case <-time.After(timeout):
		n.log.Warn("network-online: no link got an address in time; starting units anyway", "timeout", timeout)
	case <-ctx.Done():
	}
}

// configure puts a lease on its link: the address, and on the primary
// link the default route and /etc/resolv.conf.
func configure(log *slog.Logger, l netlink.Link, lease dhcpclient.Lease, primary bool) error {
	var router netip.Addr
	if primary {
		router = lease.Router
	}
	if err := dhcpclient.Apply(l, lease.Addr, router); err != nil {
		return err
	}
	attrs := []any{"iface", l.Attrs().Name, "mac", l.Attrs().HardwareAddr.String(), "ip", lease.Addr.String(), "server", lease.Server}
	if router.IsValid() {
		attrs = append(attrs, "gateway", router)
	}
	if primary && len(lease.DNS) > 0 {
		var b strings.Builder
		for _, d := range lease.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		_ = os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644)
	}
	log.Info("DHCP lease", attrs...)
	return nil
}
