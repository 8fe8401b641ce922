// Package netenv builds small virtual networks — bridges, veth pairs, network
// namespaces, addresses and NAT — from a declarative Topology value, and tears
// them down again.
//
// Both sides of Racker use it: the simulator builds a whole rack's wiring with
// it, and integration tests build the one bridge and namespace pair they need.
// Everything Create makes is first written to a JSON record file, so Teardown
// (or TeardownRecord after a crash, from another process) removes exactly what
// was made and nothing else.
package netenv

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"regexp"
)

// MaxIfName is the kernel's limit on interface names (IFNAMSIZ-1).
const MaxIfName = 15

// Topology is the whole network to build. Names are absolute: callers derive
// them from an instance name (see Names) so several instances coexist.
type Topology struct {
	Bridges    []Bridge
	Namespaces []string // named network namespaces (/run/netns/NAME)
	Veths      []Veth
	NAT        []NAT
}

// Bridge is a Linux bridge in the root namespace. Without Address it carries
// no host address, so it is an isolated L2 segment (the rack's internal
// network); with one, the host routes for it (the public network).
type Bridge struct {
	Name    string
	Address netip.Prefix // optional host address on the bridge
}

// Veth is a veth pair: the host end stays in the root namespace (optionally
// enslaved to a bridge); the peer end moves into a namespace with its own name,
// MAC and addresses — a NIC of a simulated machine.
type Veth struct {
	Host   string // host-side name, ≤ 15 chars
	Bridge string // bridge to attach the host side to ("" = none)

	Peer      string // name inside the namespace, ≤ 15 chars
	Namespace string // "" keeps the peer in the root namespace
	MAC       net.HardwareAddr
	Addresses []netip.Prefix
	Gateway   netip.Addr // default route via this address (optional)
	// Down leaves the peer's link down after creation (a cable not yet plugged).
	Down bool
}

// NAT masquerades traffic from Subnet that leaves the host through any
// interface other than Bridge, and enables IPv4 forwarding: the simulated
// public network reaches the uplink like a home router would.
type NAT struct {
	Bridge string
	Subnet netip.Prefix
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Validate checks names and references before anything is created, so a bad
// topology fails without leaving half a network behind.
func (t Topology) Validate() error {
	seen := map[string]bool{}
	ifname := func(kind, n string) error {
		if n == "" || len(n) > MaxIfName || !nameRE.MatchString(n) {
			return fmt.Errorf("%s name %q: want 1–%d letters, digits, '-', '_' or '.'", kind, n, MaxIfName)
		}
		return nil
	}
	bridges := map[string]bool{}
	for _, b := range t.Bridges {
		if err := ifname("bridge", b.Name); err != nil {
			return err
		}
		if seen[b.Name] {
			return fmt.Errorf("interface %q declared twice", b.Name)
		}
		seen[b.Name], bridges[b.Name] = true, true
	}
	nss := map[string]bool{}
	for _, ns := range t.Namespaces {
		if ns == "" || !nameRE.MatchString(ns) || len(ns) > 200 {
			return fmt.Errorf("namespace name %q: want letters, digits, '-', '_' or '.'", ns)
		}
		if nss[ns] {
			return fmt.Errorf("namespace %q declared twice", ns)
		}
		nss[ns] = true
	}
	for _, v := range t.Veths {
		if err := ifname("veth", v.Host); err != nil {
			return err
		}
		if err := ifname("veth peer", v.Peer); err != nil {
			return err
		}
		if seen[v.Host] {
			return fmt.Errorf("interface %q declared twice", v.Host)
		}
		seen[v.Host] = true
		if v.Namespace == "" {
			if seen[v.Peer] {
				return fmt.Errorf("interface %q declared twice", v.Peer)
			}
			seen[v.Peer] = true
		} else if !nss[v.Namespace] {
			return fmt.Errorf("veth %s: namespace %q is not in the topology", v.Host, v.Namespace)
		}
		if v.Bridge != "" && !bridges[v.Bridge] {
			return fmt.Errorf("veth %s: bridge %q is not in the topology", v.Host, v.Bridge)
		}
		if v.MAC != nil && len(v.MAC) != 6 {
			return fmt.Errorf("veth %s: MAC %s is not an Ethernet address", v.Peer, v.MAC)
		}
	}
	for _, n := range t.NAT {
		if !bridges[n.Bridge] {
			return fmt.Errorf("NAT: bridge %q is not in the topology", n.Bridge)
		}
		if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
			return fmt.Errorf("NAT on %s: subnet %v is not an IPv4 prefix", n.Bridge, n.Subnet)
		}
	}
	return nil
}

// Names derives deterministic, length-safe names from an instance name, so
// the same instance always gets the same interfaces and two instances never
// collide. Interface names are cut to fit 15 characters.
type Names struct{ Instance string }

// Bridge names a bridge: "<instance>-<role>", e.g. "rsim-int".
func (n Names) Bridge(role string) string { return fit(n.Instance + "-" + role) }

// Namespace names a namespace: "<instance>-<what>" (no length limit).
func (n Names) Namespace(what string) string { return n.Instance + "-" + what }

// Iface names a host-side interface for a machine and a port, e.g.
// Iface("n1", "b") = "rsim-n1-b".
func (n Names) Iface(machine, port string) string {
	return fit(n.Instance + "-" + machine + "-" + port)
}

// fit keeps a name within IFNAMSIZ: too long names keep their start and end
// and get a short hash in between, so they stay readable and distinct.
func fit(s string) string {
	if len(s) <= MaxIfName {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(s))
	sum := fmt.Sprintf("%04x", h.Sum32()&0xffff)
	// 5 head + 4 hash + 6 tail = 15
	return s[:5] + sum + s[len(s)-6:]
}

// MAC derives a stable, locally administered unicast MAC from an instance
// name, a machine index and a port number, so a rebuilt rack keeps its MACs
// (and Racker's leases and nodes.csv stay valid).
func MAC(instance string, machine, port int) net.HardwareAddr {
	h := fnv.New32a()
	h.Write([]byte(instance))
	s := h.Sum32()
	return net.HardwareAddr{0x52, 0x54, byte(s >> 8), byte(s), byte(machine), byte(port)}
}
