// Package rack builds a whole simulated rack on one Linux machine: the two
// rack networks, the management node (a Flatcar-shaped machine made of
// namespaces, simulator/mgmtnode, with Racker installed from its installer
// image), one libvirt VM per server and one virtual BMC per VM, and tears
// it all down again. `racker-sim` is a thin layer over it.
//
// Everything it makes is written to the rack's state folder first (state.json,
// the netenv record, the VM folders, the background processes), so `down`
// removes exactly that, also after a crash.
package rack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/vm"
)

// DefaultName is the instance name when none is given.
const DefaultName = "rsim"

// DefaultDir is the state folder of an instance.
func DefaultDir(name string) string { return "/var/lib/racker-sim/" + name }

// MaxNameLen keeps every derived interface name readable within 15 chars
// ("<name>-n10-b").
const MaxNameLen = 8

var instanceRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// Config says what rack to build.
type Config struct {
	Name      string   // instance name (default rsim)
	Dir       string   // state folder (default /var/lib/racker-sim/NAME)
	Nodes     int      // servers besides the management node (default 3)
	Types     []string // node types, round-robin (default "default")
	UEFITypes []string // types that boot with OVMF
	NodesCSV  string   // optional nodes.csv to take MACs and types from
	OS        string   // testos or flatcar (what racker serve installs)
	NoBMC     bool     // no virtual BMCs (Racker drives libvirt directly)
	MemoryMiB int      // per VM (default 1024)
	// Disks are --disks values (ParseDisks): the blank disks' sizes for
	// every server or per node type; default DefaultDisks.
	Disks []string

	// RackerImage is Racker's installer image (the OCI archive `make image`
	// writes), run in the management node as `docker run` would run it.
	RackerImage string
	MgmtOS      string // the management node's OS image (make mgmtos: bin/mgmtos)
	TestOSDir   string // bin/testos, copied into the node as Racker's test OS mirror
	SimBinary   string // racker-sim itself (vBMCs, the node's first process)
}

func (c *Config) complete() error {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if !instanceRE.MatchString(c.Name) || len(c.Name) > MaxNameLen {
		return fmt.Errorf("--name %q: want 1–%d lower-case letters and digits, starting with a letter", c.Name, MaxNameLen)
	}
	if c.Dir == "" {
		c.Dir = DefaultDir(c.Name)
	}
	if c.Nodes == 0 && c.NodesCSV == "" {
		c.Nodes = 3
	}
	if c.Nodes < 0 || c.Nodes > 60 {
		return fmt.Errorf("--nodes %d: want 1–60", c.Nodes)
	}
	if len(c.Types) == 0 {
		c.Types = []string{"default"}
	}
	if c.OS == "" {
		c.OS = "testos"
	}
	if c.OS != "testos" && c.OS != "flatcar" {
		return fmt.Errorf("--os %q: want testos or flatcar", c.OS)
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 1024
	}
	return nil
}

// checkImages says what is missing to install the management node, before
// anything is made.
func (c *Config) checkImages() error {
	if c.RackerImage == "" {
		return errors.New("no installer image to install Racker with: make image writes bin/racker-VERSION.oci.tar (racker-sim takes the newest next to it), or --racker-image names one")
	}
	if c.MgmtOS == "" {
		return errors.New("no OS image for the management node: make mgmtos writes bin/mgmtos (--mgmt-os names another)")
	}
	return nil
}

// Machine is one row of the rack: the management node or a server.
type Machine struct {
	Name         string `json:"name"` // "mgmt", "n1", "n2", …
	Type         string `json:"type"`
	PrimaryMAC   string `json:"primary_mac"`
	BMCMAC       string `json:"bmc_mac"`
	SecondaryMAC string `json:"secondary_mac"`
	Firmware     string `json:"firmware,omitempty"` // servers: bios or uefi
	Comments     string `json:"comments,omitempty"`
}

// csvRow is a row of a user's nodes.csv.
type csvRow struct{ primary, bmc, secondary, typ, comments string }

// readNodesCSV reads the five documented columns; the header line and blank
// or # lines are skipped. Validation proper is Racker's job (factory check).
func readNodesCSV(path string) ([]csvRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("while reading --nodes-csv: %w", err)
	}
	defer f.Close()
	var rows []csvRow
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.SplitN(text, ",", 5)
		for len(cols) < 5 {
			cols = append(cols, "")
		}
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if _, err := net.ParseMAC(cols[0]); err != nil {
			if len(rows) == 0 && line == 1 {
				continue // the header
			}
			return nil, fmt.Errorf("%s:%d: primary MAC %q: %w", path, line, cols[0], err)
		}
		for i, what := range []string{"BMC", "secondary"} {
			if _, err := net.ParseMAC(cols[i+1]); err != nil {
				return nil, fmt.Errorf("%s:%d: %s MAC %q: the simulator needs every MAC", path, line, what, cols[i+1])
			}
		}
		rows = append(rows, csvRow{strings.ToLower(cols[0]), strings.ToLower(cols[1]), strings.ToLower(cols[2]), cols[3], cols[4]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s: need the management node and at least one server", path)
	}
	return rows, nil
}

// planMachines lists the rack's machines, management node first: from the
// user's nodes.csv (the row whose comment mentions "mgmt", else the first,
// is the management node) or generated with stable MACs from the name.
func planMachines(c Config) ([]Machine, error) {
	fw := func(typ string) string {
		if slices.Contains(c.UEFITypes, typ) {
			return string(vm.UEFI)
		}
		return string(vm.BIOS)
	}
	if c.NodesCSV != "" {
		rows, err := readNodesCSV(c.NodesCSV)
		if err != nil {
			return nil, err
		}
		mgmt := 0
		for i, r := range rows {
			if strings.Contains(strings.ToLower(r.comments), "mgmt") {
				mgmt = i
				break
			}
		}
		out := []Machine{{Name: "mgmt", Type: typeOr(rows[mgmt].typ), PrimaryMAC: rows[mgmt].primary, BMCMAC: rows[mgmt].bmc, SecondaryMAC: rows[mgmt].secondary, Comments: rows[mgmt].comments}}
		for i, r := range rows {
			if i == mgmt {
				continue
			}
			t := typeOr(r.typ)
			out = append(out, Machine{Name: fmt.Sprintf("n%d", len(out)), Type: t, PrimaryMAC: r.primary, BMCMAC: r.bmc, SecondaryMAC: r.secondary, Firmware: fw(t), Comments: r.comments})
		}
		if len(out)-1 > 60 {
			return nil, fmt.Errorf("%s: %d servers; the simulator takes at most 60", c.NodesCSV, len(out)-1)
		}
		return out, nil
	}
	mac := func(i, port int) string { return netenv.MAC(c.Name, i, port).String() }
	out := []Machine{{Name: "mgmt", Type: c.Types[0], PrimaryMAC: mac(0, 1), BMCMAC: mac(0, 2), SecondaryMAC: mac(0, 3), Comments: "mgmt node"}}
	for i := 1; i <= c.Nodes; i++ {
		t := c.Types[(i-1)%len(c.Types)]
		out = append(out, Machine{Name: fmt.Sprintf("n%d", i), Type: t, PrimaryMAC: mac(i, 1), BMCMAC: mac(i, 2), SecondaryMAC: mac(i, 3), Firmware: fw(t), Comments: fmt.Sprintf("simulated %s-n%d", c.Name, i)})
	}
	return out, nil
}

func typeOr(t string) string {
	if t == "" {
		return "default"
	}
	return t
}

// nodesCSV renders the management node's nodes.csv: the documented header
// and one row per machine with the MACs the simulator really gave them.
func nodesCSV(ms []Machine) string {
	var b strings.Builder
	b.WriteString("Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\n")
	for _, m := range ms {
		fmt.Fprintf(&b, "%s, %s, %s, %s, %s\n", m.PrimaryMAC, m.BMCMAC, m.SecondaryMAC, m.Type, strings.ReplaceAll(m.Comments, ",", ";"))
	}
	return b.String()
}

// Interface names inside the management node: the primary NIC faces the
// public network and the secondary the internal one (the swapped cables).
const (
	MgmtPrimaryIface   = "eth0"
	MgmtSecondaryIface = "eth1"
	BMCIface           = "eth0"
)

// publicSubnet picks the public network's /24 from the instance name,
// avoiding every prefix the host already routes.
func publicSubnet(name string, routed []netip.Prefix) (netip.Prefix, error) {
	h := netenv.MAC(name, 0, 0) // reuse its stable hash bytes
	for i := 0; i < 200; i++ {
		third := (int(h[2])<<8 | int(h[3]) + i) % 200
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(20 + third), 0}), 24)
		if !slices.ContainsFunc(routed, p.Overlaps) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.213.0.0/16 for the public network of %s", name)
}

// topology is the rack's wiring: bridges, the management namespace with its
// two NICs, one namespace per BMC behind a veth with the BMC MAC, and NAT for
// the public network. VMs bring their own taps (libvirt makes them).
func topology(name string, ms []Machine, pub netip.Prefix, withBMC bool) netenv.Topology {
	n := netenv.Names{Instance: name}
	intBr, pubBr := n.Bridge("int"), n.Bridge("pub")
	gw := pub.Addr().Next()
	mgmtAddr := gw.Next()
	mgmt := ms[0]
	t := netenv.Topology{
		Bridges:    []netenv.Bridge{{Name: intBr}, {Name: pubBr, Address: netip.PrefixFrom(gw, pub.Bits())}},
		Namespaces: []string{n.Namespace("mgmt")},
		Veths: []netenv.Veth{
			{Host: n.Iface("m", "p"), Bridge: pubBr, Peer: MgmtPrimaryIface, Namespace: n.Namespace("mgmt"),
				MAC: mustMAC(mgmt.PrimaryMAC), Addresses: []netip.Prefix{netip.PrefixFrom(mgmtAddr, pub.Bits())}, Gateway: gw},
			{Host: n.Iface("m", "i"), Bridge: intBr, Peer: MgmtSecondaryIface, Namespace: n.Namespace("mgmt"),
				MAC: mustMAC(mgmt.SecondaryMAC)},
		},
		NAT: []netenv.NAT{{Bridge: pubBr, Subnet: pub}},
	}
	if withBMC {
		for _, m := range ms[1:] {
			ns := n.Namespace(m.Name + "-bmc")
			t.Namespaces = append(t.Namespaces, ns)
			t.Veths = append(t.Veths, netenv.Veth{Host: n.Iface(m.Name, "b"), Bridge: intBr, Peer: BMCIface, Namespace: ns, MAC: mustMAC(m.BMCMAC)})
		}
	}
	return t
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(fmt.Sprintf("rack: MAC %q passed validation but does not parse: %v", s, err))
	}
	return m
}
