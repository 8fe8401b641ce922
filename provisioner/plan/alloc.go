package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// State is what the plan remembers between runs: each MAC's address per
// subnet, each node's hostname, and the choices the rack was planned with.
type State struct {
	// Version is the format of plan.json (StateVersion); 0 is the first
	// release's file, which had no choices (Store.Load migrates it).
	Version int `json:"version,omitempty"`
	// Choices are the user's choices that shape the rack (subnet, cluster
	// name, controllers, …, and bootstrap's answers), by the command-line
	// flag that sets each, in canonical form: later commands read them
	// instead of their flags' defaults, so a command run without flags
	// (racker serve from its unit) never renames or renumbers the rack.
	// The CLI owns the keys; the plan only keeps them.
	Choices map[string]string `json:"choices,omitempty"`
	// Addresses maps subnet → MAC → address.
	Addresses map[string]map[string]string `json:"addresses"`
	// Hostnames maps a node's primary MAC → hostname.
	Hostnames map[string]string `json:"hostnames"`
}

// StateVersion is the plan.json format this release writes. Version 2
// added Choices.
const StateVersion = 2

// Allocator gives the plan a State to read and change. Update runs fn on the
// current state and keeps the changes fn made.
type Allocator interface {
	Update(fn func(*State) error) error
}

// Memory is an Allocator that keeps its state in memory: for dry runs
// (factory check) and tests.
type Memory struct{ State State }

// NewMemory returns an empty in-memory allocator.
func NewMemory() *Memory { return &Memory{} }

func (m *Memory) Update(fn func(*State) error) error {
	st := m.State.clone()
	if err := fn(&st); err != nil {
		return err
	}
	m.State = st
	return nil
}

func (s State) clone() State {
	out := State{Version: s.Version, Addresses: map[string]map[string]string{}, Hostnames: map[string]string{}}
	if s.Choices != nil {
		out.Choices = map[string]string{}
		for k, v := range s.Choices {
			out.Choices[k] = v
		}
	}
	for subnet, m := range s.Addresses {
		c := map[string]string{}
		for k, v := range m {
			c[k] = v
		}
		out.Addresses[subnet] = c
	}
	for k, v := range s.Hostnames {
		out.Hostnames[k] = v
	}
	return out
}

// allocate assigns roles, then addresses and hostnames, keeping every one
// already held.
func allocate(p *Plan, c Choices, alloc Allocator) error {
	return alloc.Update(func(st *State) error {
		if st.Addresses == nil {
			st.Addresses = map[string]map[string]string{}
		}
		if st.Hostnames == nil {
			st.Hostnames = map[string]string{}
		}
		prefix := p.ClusterName + "-" + string(Controller) + "-"
		wasController := func(n Node) bool { return strings.HasPrefix(st.Hostnames[n.PrimaryMAC], prefix) }
		if err := assignRoles(p.Nodes, c, wasController); err != nil {
			return err
		}
		if err := allocateAddresses(p, st); err != nil {
			return err
		}
		allocateHostnames(p, st)
		return nil
	})
}

func allocateAddresses(p *Plan, st *State) error {
	key := p.Subnet.String()
	held := st.Addresses[key]
	if held == nil {
		held = map[string]string{}
		st.Addresses[key] = held
	}
	first := p.Subnet.Addr().Next()
	// The management node always sits at the first host address.
	for mac, a := range held {
		if a == first.String() && mac != p.Management.SecondaryMAC {
			delete(held, mac)
		}
	}
	held[p.Management.SecondaryMAC] = first.String()
	used := map[netip.Addr]bool{}
	for _, a := range held {
		if ip, err := netip.ParseAddr(a); err == nil && p.Subnet.Contains(ip) {
			used[ip] = true
		}
	}
	last := lastHost(p.Subnet)
	next := first.Next()
	nodes := append(append([]*Node(nil), ptrs(p.Nodes)...), ptrs(p.Excluded)...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Index < nodes[j].Index })
	need := 0
	for _, n := range nodes {
		for _, mac := range []string{n.PrimaryMAC, n.BMCMAC} {
			if _, ok := held[mac]; !ok {
				need++
			}
		}
	}
	for _, n := range nodes {
		for _, slot := range []struct {
			mac string
			dst *netip.Addr
		}{{n.PrimaryMAC, &n.IP}, {n.BMCMAC, &n.BMCIP}} {
			if a, ok := held[slot.mac]; ok {
				if ip, err := netip.ParseAddr(a); err == nil && p.Subnet.Contains(ip) {
					*slot.dst = ip
					continue
				}
			}
			for next.Compare(last) <= 0 && used[next] {
				next = next.Next()
			}
			if next.Compare(last) > 0 {
				return fmt.Errorf("subnet %s is full: %d addresses are held and %d more are needed (each node and each BMC takes one; addresses of removed rows stay reserved until factory reset); choose a larger --subnet",
					p.Subnet, len(used), need)
			}
			*slot.dst = next
			used[next] = true
			held[slot.mac] = next.String()
			need--
		}
	}
	p.Management.IP = first
	return nil
}

func ptrs(ns []Node) []*Node {
	out := make([]*Node, len(ns))
	for i := range ns {
		out[i] = &ns[i]
	}
	return out
}

// lastHost is the address before the broadcast address.
func lastHost(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1<<hostBits - 1)
	v-- // not the broadcast address
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocateHostnames keeps each node's hostname while it still fits its role
// and numbers new nodes with the lowest free index for their role.
func allocateHostnames(p *Plan, st *State) {
	taken := map[string]bool{}
	var fresh []*Node
	for i := range p.Nodes {
		n := &p.Nodes[i]
		prefix := fmt.Sprintf("%s-%s-", p.ClusterName, n.Role)
		h := st.Hostnames[n.PrimaryMAC]
		if idx, ok := strings.CutPrefix(h, prefix); ok && isIndex(idx) && !taken[h] {
			n.Hostname = h
			taken[h] = true
			continue
		}
		fresh = append(fresh, n)
	}
	for _, n := range fresh {
		for i := 0; ; i++ {
			h := fmt.Sprintf("%s-%s-%d", p.ClusterName, n.Role, i)
			if !taken[h] {
				n.Hostname = h
				taken[h] = true
				st.Hostnames[n.PrimaryMAC] = h
				break
			}
		}
	}
}

func isIndex(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && strconv.Itoa(n) == s
}
