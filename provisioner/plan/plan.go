// Package plan turns an inventory and the user's choices into the rack's
// plan: each machine's role, hostname and internal addresses (node and BMC).
//
// Addresses are allocated once per MAC and kept in the state folder, so a
// row added to or removed from nodes.csv never renumbers another machine —
// the mistake of tools that derived addresses from the sorted MAC list.
package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/inventory"
)

// Role of a machine in the cluster.
type Role string

const (
	Management Role = "management"
	Controller Role = "controller"
	Worker     Role = "worker"
	Excluded   Role = "excluded"
)

// DefaultSubnet is the internal network of a rack unless --subnet says otherwise.
var DefaultSubnet = netip.MustParsePrefix("172.24.213.0/24")

// AnyType as controller type lets controllers be of any node type.
const AnyType = "any"

// Choices are the user's decisions that shape the plan. The zero value,
// after Defaults, is a valid choice for any rack.
type Choices struct {
	Subnet      netip.Prefix
	ClusterName string
	// Controllers is 1 or 3; 0 chooses 3 when the controller type has at
	// least 3 nodes ("HA"), else 1.
	Controllers int
	// ControllerType is a node type or AnyType; "" chooses the most common
	// type (the earliest in the file on a tie).
	ControllerType string
	// StorageType marks the first StorageNodes workers of this type (or of
	// any type when "" and StorageNodes > 0) as storage nodes.
	StorageType string
	// StorageNodes is a count, AllStorage for all, 0 for none (or all of
	// StorageType when that is set).
	StorageNodes int
	// Exclude lists MACs (any of a node's) of nodes left out of the cluster.
	Exclude []string
	// Now is when the plan is made (zero: the current time): it decides
	// which retired machines' addresses have cooled down (lifecycle.go).
	// Not a user choice; tests set it.
	Now time.Time
}

// AllStorage as StorageNodes makes every worker of the storage type a storage node.
const AllStorage = -1

// Defaults fills in unset choices.
func (c Choices) Defaults() Choices {
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if c.ClusterName == "" {
		c.ClusterName = "racker"
	}
	if c.StorageType != "" && c.StorageNodes == 0 {
		c.StorageNodes = AllStorage
	}
	return c
}

// Node is one machine in the plan. Its JSON form is a stable interface
// (racker plan -o json).
type Node struct {
	PrimaryMAC   string     `json:"primary_mac"`
	BMCMAC       string     `json:"bmc_mac"`
	SecondaryMAC string     `json:"secondary_mac"`
	Type         string     `json:"type"`
	Role         Role       `json:"role"`
	Storage      bool       `json:"storage"`
	Hostname     string     `json:"hostname"`
	IP           netip.Addr `json:"ip"`
	// BMCIP is the BMC's internal address; the management node's BMC is on
	// the public network and has none.
	BMCIP netip.Addr `json:"bmc_ip,omitzero"`
	Index int        `json:"index"` // position among all rows, 0 = first row
}

// Plan is the whole rack.
type Plan struct {
	Subnet      netip.Prefix `json:"subnet"`
	ClusterName string       `json:"cluster_name"`
	Management  Node         `json:"management"`
	Nodes       []Node       `json:"nodes"`              // controllers and workers, in file order
	Excluded    []Node       `json:"excluded,omitempty"` // nodes left out with --exclude
	// Retired lists the MACs of machines that left the rack (racker
	// retire, racker replace), sorted: the boot services refuse them.
	Retired []string `json:"retired,omitempty"`
}

// Controllers returns the controller nodes in order.
func (p *Plan) Controllers() []Node { return p.withRole(Controller) }

// Workers returns the worker nodes in order.
func (p *Plan) Workers() []Node { return p.withRole(Worker) }

func (p *Plan) withRole(r Role) []Node {
	var out []Node
	for _, n := range p.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}

// Servers returns the nodes and then the excluded nodes: every server on
// the internal network other than the management node. Excluded nodes are
// still cabled there, so they keep their addresses and their BMCs.
func (p *Plan) Servers() []Node {
	return append(append(make([]Node, 0, len(p.Nodes)+len(p.Excluded)), p.Nodes...), p.Excluded...)
}

// All returns the management node, the nodes and the excluded nodes.
func (p *Plan) All() []Node {
	out := append([]Node{p.Management}, p.Nodes...)
	return append(out, p.Excluded...)
}

// Find returns the node named by a MAC (primary, BMC or secondary, any
// case), a hostname, or a plan index ("2": the row's index in All order
// is not used; the number is Node.Index).
func (p *Plan) Find(name string) (Node, bool) {
	mac, macErr := inventory.NormalizeMAC(name)
	for _, n := range p.All() {
		switch {
		case macErr == nil && (n.PrimaryMAC == mac || n.BMCMAC == mac || n.SecondaryMAC == mac):
			return n, true
		case n.Hostname != "" && n.Hostname == name:
			return n, true
		case fmt.Sprint(n.Index) == name:
			return n, true
		}
	}
	return Node{}, false
}

// Make computes the plan. alloc hands out addresses and hostnames; use a
// *Store to persist them, or NewMemory for a dry run.
func Make(inv *inventory.Inventory, c Choices, alloc Allocator) (*Plan, error) {
	c = c.Defaults()
	if !c.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("subnet %s: only IPv4 subnets are supported", c.Subnet)
	}
	c.Subnet = c.Subnet.Masked()
	excluded, err := excludedSet(inv, c.Exclude)
	if err != nil {
		return nil, err
	}

	p := &Plan{Subnet: c.Subnet, ClusterName: c.ClusterName}
	mgmt := inv.Mgmt()
	p.Management = Node{PrimaryMAC: mgmt.PrimaryMAC, BMCMAC: mgmt.BMCMAC, SecondaryMAC: mgmt.SecondaryMAC,
		Type: mgmt.Type, Role: Management, Hostname: c.ClusterName + "-management", Index: inv.Management}

	var members []Node
	for i, n := range inv.Nodes {
		if i == inv.Management {
			continue
		}
		pn := Node{PrimaryMAC: n.PrimaryMAC, BMCMAC: n.BMCMAC, SecondaryMAC: n.SecondaryMAC, Type: n.Type, Index: i}
		if excluded[i] {
			pn.Role = Excluded
			p.Excluded = append(p.Excluded, pn)
			continue
		}
		members = append(members, pn)
	}
	p.Nodes = members
	if err := allocate(p, c, alloc); err != nil {
		return nil, err
	}
	return p, nil
}

func excludedSet(inv *inventory.Inventory, macs []string) (map[int]bool, error) {
	out := map[int]bool{}
	var bad []string
	for _, m := range macs {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		n, ok := inv.NodeByMAC(m)
		if !ok {
			bad = append(bad, m)
			continue
		}
		for i, x := range inv.Nodes {
			if x.Line == n.Line {
				if i == inv.Management {
					return nil, fmt.Errorf("--exclude %s: that is the management node", m)
				}
				out[i] = true
			}
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("--exclude: no node has the MAC %s", strings.Join(bad, ", "))
	}
	return out, nil
}

// assignRoles picks controllers, workers and storage nodes. Nodes that were
// controllers before (wasController) stay controllers while they fit the
// choices, so adding a row never moves the control plane; the rest are
// taken in file order.
func assignRoles(nodes []Node, c Choices, wasController func(Node) bool) error {
	if len(nodes) == 0 {
		return nil // a rack of only the management node: nothing to provision
	}
	count := map[string]int{}
	var order []string
	for _, n := range nodes {
		if count[n.Type] == 0 {
			order = append(order, n.Type)
		}
		count[n.Type]++
	}
	ctype := c.ControllerType
	if ctype == "" {
		ctype = order[0]
		for _, t := range order {
			if count[t] > count[ctype] {
				ctype = t
			}
		}
	}
	avail := len(nodes)
	if ctype != AnyType {
		avail = count[ctype]
		if avail == 0 {
			types := append([]string(nil), order...)
			sort.Strings(types)
			return fmt.Errorf("--controller-type %s: no node has that type (types: %s)", ctype, strings.Join(types, ", "))
		}
	}
	want := c.Controllers
	switch want {
	case 0:
		want = 1
		if avail >= 3 {
			want = 3
		}
	case 1, 3:
		if want > avail {
			return fmt.Errorf("--controllers %d: only %d node(s) of type %s", want, avail, ctype)
		}
	default:
		return fmt.Errorf("--controllers %d: choose 1 or 3", want)
	}
	fits := func(n Node) bool { return ctype == AnyType || n.Type == ctype }
	for i := range nodes {
		nodes[i].Role = Worker
	}
	for _, first := range []bool{true, false} {
		for i := range nodes {
			if want > 0 && nodes[i].Role == Worker && fits(nodes[i]) && (!first || wasController(nodes[i])) {
				nodes[i].Role = Controller
				want--
			}
		}
	}
	left := c.StorageNodes
	for i := range nodes {
		if nodes[i].Role != Worker || left == 0 {
			continue
		}
		if c.StorageType != "" && nodes[i].Type != c.StorageType {
			continue
		}
		nodes[i].Storage = true
		if left > 0 {
			left--
		}
	}
	if left > 0 {
		return fmt.Errorf("--storage-nodes %d: only %d worker(s) of type %q", c.StorageNodes, c.StorageNodes-left, c.StorageType)
	}
	return nil
}
