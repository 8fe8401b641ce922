package netenv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Env is a built topology. Keep it to tear the network down, or rebuild it
// from the record file with Open after a restart.
type Env struct {
	Topology Topology
	path     string
	rec      *record
	log      *slog.Logger
}

// RecordPath is the JSON record file of this environment.
func (e *Env) RecordPath() string { return e.path }

// Create builds t and records every item in recordPath before making it. It
// refuses to touch an interface or namespace that already exists and is not
// its own, so it never adopts (and later deletes) something it did not make.
// On failure it tears down what it made.
func Create(t Topology, recordPath string, log *slog.Logger) (*Env, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("while checking the topology: %w", err)
	}
	if _, err := os.Stat(recordPath); err == nil {
		return nil, fmt.Errorf("network record %s exists: tear that network down first", recordPath)
	}
	e := &Env{Topology: t, path: recordPath, rec: &record{Version: 1, Topology: t}, log: log}
	if err := e.build(); err != nil {
		if terr := e.Teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("while cleaning up after the failure: %w", terr))
		}
		return nil, err
	}
	return e, nil
}

// Open reads the record of an environment made by Create (maybe in another
// process), to tear it down or to inject faults.
func Open(recordPath string, log *slog.Logger) (*Env, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := readRecord(recordPath)
	if err != nil {
		return nil, err
	}
	return &Env{Topology: r.Topology, path: recordPath, rec: r, log: log}, nil
}

// note records an item durably before it is made.
func (e *Env) note(it item) error {
	e.rec.Items = append(e.rec.Items, it)
	return e.rec.save(e.path)
}

func (e *Env) build() error {
	if err := e.rec.save(e.path); err != nil {
		return err
	}
	for _, b := range e.Topology.Bridges {
		if err := e.makeBridge(b); err != nil {
			return err
		}
	}
	for _, ns := range e.Topology.Namespaces {
		if NamespaceExists(ns) {
			return fmt.Errorf("network namespace %s exists already and is not ours", ns)
		}
		if err := e.note(item{Kind: kindNamespace, Name: ns}); err != nil {
			return err
		}
		if err := createNamespace(ns); err != nil {
			return err
		}
		e.log.Debug("netenv: namespace created", "netns", ns)
	}
	for _, v := range e.Topology.Veths {
		if err := e.makeVeth(v); err != nil {
			return err
		}
	}
	for _, n := range e.Topology.NAT {
		if err := e.makeNAT(n); err != nil {
			return err
		}
	}
	return nil
}

func exists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

func (e *Env) makeBridge(b Bridge) error {
	if exists(b.Name) {
		return fmt.Errorf("interface %s exists already and is not ours", b.Name)
	}
	if err := e.note(item{Kind: kindBridge, Name: b.Name}); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("while creating bridge %s: %w", b.Name, err)
	}
	// No IPv6 on the host side: the host must not chatter (router
	// solicitations, DAD) on a simulated rack network.
	_ = writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", b.Name, "disable_ipv6"), "1")
	if b.Address.IsValid() {
		if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(b.Address)}); err != nil {
			return fmt.Errorf("while adding %s to bridge %s: %w", b.Address, b.Name, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("while setting bridge %s up: %w", b.Name, err)
	}
	e.log.Debug("netenv: bridge created", "bridge", b.Name, "address", b.Address)
	return nil
}

func (e *Env) makeVeth(v Veth) error {
	if exists(v.Host) || (v.Namespace == "" && exists(v.Peer)) {
		return fmt.Errorf("veth %s/%s exists already and is not ours", v.Host, v.Peer)
	}
	if err := e.note(item{Kind: kindVeth, Name: v.Host}); err != nil {
		return err
	}
	la := netlink.LinkAttrs{Name: v.Host}
	veth := &netlink.Veth{LinkAttrs: la, PeerName: v.Peer, PeerHardwareAddr: v.MAC}
	if v.Namespace != "" {
		fd, err := unix.Open(NamespacePath(v.Namespace), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("while opening namespace %s for veth %s: %w", v.Namespace, v.Peer, err)
		}
		defer unix.Close(fd)
		veth.PeerNamespace = netlink.NsFd(fd)
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("while creating veth %s (peer %s in %q): %w", v.Host, v.Peer, v.Namespace, err)
	}
	host, err := netlink.LinkByName(v.Host)
	if err != nil {
		return fmt.Errorf("while finding veth %s: %w", v.Host, err)
	}
	_ = writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", v.Host, "disable_ipv6"), "1")
	if v.Bridge != "" {
		br, err := netlink.LinkByName(v.Bridge)
		if err != nil {
			return fmt.Errorf("while finding bridge %s for veth %s: %w", v.Bridge, v.Host, err)
		}
		if err := netlink.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("while attaching veth %s to bridge %s: %w", v.Host, v.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("while setting veth %s up: %w", v.Host, err)
	}
	h, err := handle(v.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	peer, err := h.LinkByName(v.Peer)
	if err != nil {
		return fmt.Errorf("while finding veth peer %s in %q: %w", v.Peer, v.Namespace, err)
	}
	for _, a := range v.Addresses {
		if err := h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			return fmt.Errorf("while adding %s to %s in %q: %w", a, v.Peer, v.Namespace, err)
		}
	}
	if !v.Down {
		if err := h.LinkSetUp(peer); err != nil {
			return fmt.Errorf("while setting %s in %q up: %w", v.Peer, v.Namespace, err)
		}
	}
	if v.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IP(v.Gateway.AsSlice())}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("while adding a default route via %s in %q: %w", v.Gateway, v.Namespace, err)
		}
	}
	e.log.Debug("netenv: veth created", "host", v.Host, "peer", v.Peer, "netns", v.Namespace, "mac", v.MAC)
	return nil
}

func (e *Env) makeNAT(n NAT) error {
	prev, err := readSysctl(ipForwardSysctl)
	if err != nil {
		return err
	}
	if prev != "1" {
		if err := e.note(item{Kind: kindSysctl, Name: ipForwardSysctl, Prev: prev}); err != nil {
			return err
		}
		if err := writeSysctl(ipForwardSysctl, "1"); err != nil {
			return err
		}
	}
	for _, r := range natRules(n) {
		if err := e.note(r); err != nil {
			return err
		}
		if err := addRule(r); err != nil {
			return fmt.Errorf("while adding NAT for %s on %s: %w", n.Subnet, n.Bridge, err)
		}
	}
	e.log.Debug("netenv: NAT added", "bridge", n.Bridge, "subnet", n.Subnet)
	return nil
}

// Teardown removes every recorded item, newest first, and then the record.
// Items already gone are fine, so it can run after a crash at any point and
// more than once. It keeps going past errors and returns them all.
func (e *Env) Teardown() error {
	var errs []error
	items := e.rec.Items
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		var err error
		switch it.Kind {
		case kindNamespace:
			err = deleteNamespace(it.Name)
		case kindBridge, kindVeth:
			if l, lerr := netlink.LinkByName(it.Name); lerr == nil {
				if derr := netlink.LinkDel(l); derr != nil {
					err = fmt.Errorf("while deleting interface %s: %w", it.Name, derr)
				}
			}
		case kindIPTables:
			err = deleteRule(it)
		case kindSysctl:
			if it.Name == ipForwardSysctl && otherNATs() {
				e.log.Debug("netenv: leaving IPv4 forwarding on for another environment's NAT")
				continue
			}
			err = writeSysctl(it.Name, it.Prev)
		default:
			err = fmt.Errorf("unknown item kind %q in network record %s", it.Kind, e.path)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			e.log.Debug("netenv: removed", "kind", it.Kind, "name", it.Name)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Remove(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("while removing network record %s: %w", e.path, err)
	}
	_ = os.Remove(e.path + ".tmp")
	return nil
}

// TeardownRecord tears down the environment recorded in recordPath; a
// missing record means there is nothing to do.
func TeardownRecord(recordPath string, log *slog.Logger) error {
	if _, err := os.Stat(recordPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	e, err := Open(recordPath, log)
	if err != nil {
		return err
	}
	return e.Teardown()
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
