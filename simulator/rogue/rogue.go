// Package rogue is an attacker on a simulated rack's internal network: a
// network namespace with a NIC of its own on the internal bridge, as a
// laptop plugged into the rack's switch, a BMC sharing a node's NIC, or a
// compromised node would have. Attach and Detach plug and unplug it
// (`racker-sim fault rogue on|off`); the attacks run inside its namespace
// (`racker-sim rogue …`) and report what they got, so a test asserts that
// Racker gave away nothing: no Ignition config, no token, no phase moved.
//
// It speaks the protocols as anyone could from that port: raw DHCP (any
// client MAC in chaddr), plain HTTP to the boot services, and it can take a
// node's MAC and address.
package rogue

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/netenv"
)

// Iface is the rogue's NIC inside its namespace.
const Iface = "eth0"

// OwnMAC is the rogue's own MAC (locally administered), unlike any rack MAC.
var OwnMAC = net.HardwareAddr{0x02, 0x66, 0x00, 0x00, 0x66, 0x01}

// Rack names what the rogue plugs into: the rack's instance name, its
// internal bridge and its state folder (where the network record lives).
type Rack struct {
	Name   string // instance name: the namespace is NAME-rogue
	Bridge string // the internal bridge
	Dir    string // the rack's state folder
}

// Namespace is the rogue's network namespace.
func (r Rack) Namespace() string { return r.Name + "-rogue" }

func (r Rack) record() string { return filepath.Join(r.Dir, "rogue-net.json") }

// Attached says whether the rogue is plugged in.
func (r Rack) Attached() bool { return netenv.NamespaceExists(r.Namespace()) }

// Attach plugs the rogue into the internal bridge: its namespace, and a
// veth whose peer (eth0, OwnMAC, no address) sits in it. Attaching twice is
// harmless.
func Attach(r Rack, log *slog.Logger) error {
	if r.Attached() {
		return nil
	}
	// The bridge is the rack's, not the rogue's: netenv makes (and later
	// removes) the namespace and the veth, and the veth's host end is
	// plugged into the bridge here.
	host := netenv.Names{Instance: r.Name}.Iface("rogue", "i")
	top := netenv.Topology{
		Namespaces: []string{r.Namespace()},
		Veths:      []netenv.Veth{{Host: host, Peer: Iface, Namespace: r.Namespace(), MAC: OwnMAC}},
	}
	if _, err := netenv.Create(top, r.record(), log); err != nil {
		return fmt.Errorf("while attaching the rogue host to %s: %w", r.Bridge, err)
	}
	br, err := netlink.LinkByName(r.Bridge)
	if err == nil {
		var l netlink.Link
		if l, err = netlink.LinkByName(host); err == nil {
			if err = netlink.LinkSetMaster(l, br); err == nil {
				err = netlink.LinkSetUp(l)
			}
		}
	}
	if err != nil {
		Detach(r, log)
		return fmt.Errorf("while plugging the rogue host into %s: %w", r.Bridge, err)
	}
	return nil
}

// Detach unplugs the rogue and removes its namespace.
func Detach(r Rack, log *slog.Logger) error {
	if _, err := os.Stat(r.record()); os.IsNotExist(err) {
		return nil
	}
	if err := netenv.TeardownRecord(r.record(), log); err != nil {
		return fmt.Errorf("while detaching the rogue host: %w", err)
	}
	return nil
}

// Take makes the rogue's NIC look like another machine's: its MAC and its
// address (prefix length included). It runs inside the rogue's namespace.
func Take(mac net.HardwareAddr, addr netip.Prefix) error {
	l, err := netlink.LinkByName(Iface)
	if err != nil {
		return fmt.Errorf("while finding the rogue's NIC: %w", err)
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("while taking %s: %w", mac, err)
	}
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("while taking %s: %w", mac, err)
	}
	if err := flushAddrs(l); err != nil {
		return err
	}
	if addr.IsValid() {
		ipn := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("while taking %s: %w", addr, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("while taking %s: %w", mac, err)
	}
	return nil
}

// Release gives the rogue its own MAC back and no address.
func Release() error { return Take(OwnMAC, netip.Prefix{}) }

func flushAddrs(l netlink.Link) error {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("while listing the rogue's addresses: %w", err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("while removing %s: %w", a.IPNet, err)
		}
	}
	return nil
}
