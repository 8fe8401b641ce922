// Package inventory reads a rack's OEM files — nodes.csv and the IPMI
// credentials — validates them, and finds the management node among the rows.
//
// It is the first thing every Racker command does, so its errors are written
// for the person who racked the servers: every problem in the file at once,
// each as "nodes.csv:LINE: FIELD: message", so one edit fixes them all.
package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File names inside the OEM folder.
const (
	NodesFile    = "nodes.csv"
	UserFile     = "ipmi_user"
	PasswordFile = "ipmi_password"
)

// Header is the documented first line of nodes.csv.
const Header = "Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments"

// DefaultType is the node type of a row whose type column is empty.
const DefaultType = "default"

// Node is one row of nodes.csv. MACs are normalised: lower case, colons.
type Node struct {
	Line         int    // line number in nodes.csv, for messages
	PrimaryMAC   string // the NIC the node PXE-boots from (shared with its BMC)
	BMCMAC       string
	SecondaryMAC string // may be empty, except on the management node
	Type         string
	Comments     string
}

// Inventory is a validated rack.
type Inventory struct {
	Dir   string // the OEM folder
	Nodes []Node // every row, management node included, in file order
	// Management indexes Nodes.
	Management int
	// PXEInterface is the local interface carrying the management node's
	// secondary MAC; empty when no local interface has it (then Warnings says so).
	PXEInterface string
	Credentials  Credentials
	// Warnings are problems that do not stop Racker (loose file modes, a PXE
	// interface that is not on this machine).
	Warnings []string
}

// Mgmt returns the management node.
func (inv *Inventory) Mgmt() Node { return inv.Nodes[inv.Management] }

// Others returns every node except the management node, in file order.
func (inv *Inventory) Others() []Node {
	out := make([]Node, 0, len(inv.Nodes))
	for i, n := range inv.Nodes {
		if i != inv.Management {
			out = append(out, n)
		}
	}
	return out
}

// Credentials are the BMC user and password. They print as redacted so that
// neither can reach a log line or an error message by accident.
type Credentials struct {
	User     string
	Password string
}

func (c Credentials) String() string   { return "Credentials{user=REDACTED, password=REDACTED}" }
func (c Credentials) GoString() string { return c.String() }

// Options say where to look and how to find the management node.
type Options struct {
	Dir string // OEM folder
	// MgmtMAC, when set, names the management node instead of the local
	// interfaces (the simulator and tests use it).
	MgmtMAC string
	// PXEInterface, when set, overrides the interface found by MAC.
	PXEInterface string
	// LocalMACs lists this machine's interfaces by MAC; nil means the real
	// interfaces (net.Interfaces).
	LocalMACs func() (map[string]string, error)
}

// Load reads and validates the OEM folder. On any problem it returns
// *Problems listing all of them.
func Load(opts Options) (*Inventory, error) {
	var probs Problems
	inv := &Inventory{Dir: opts.Dir, Management: -1}

	path := filepath.Join(opts.Dir, NodesFile)
	f, err := os.Open(path)
	if err != nil {
		probs.add(NodesFile, 0, "", "cannot read: %v", unwrapPathErr(err))
	} else {
		nodes, perr := Parse(NodesFile, f)
		f.Close()
		inv.Nodes = nodes
		var p *Problems
		if errors.As(perr, &p) {
			probs = append(probs, *p...)
		} else if perr != nil {
			probs.add(NodesFile, 0, "", "%v", perr)
		}
	}

	inv.Credentials, inv.Warnings = readCredentials(opts.Dir, &probs)

	if len(inv.Nodes) > 0 {
		local := opts.LocalMACs
		if local == nil {
			local = localMACs
		}
		findManagement(inv, opts, local, &probs)
	} else if len(probs) == 0 {
		probs.add(NodesFile, 0, "", "no nodes: the file has no rows")
	}

	if len(probs) > 0 {
		probs.sort()
		return nil, &probs
	}
	return inv, nil
}

// NodeByMAC finds a node by any of its MACs (any case and separator).
func (inv *Inventory) NodeByMAC(mac string) (Node, bool) {
	m, err := NormalizeMAC(mac)
	if err != nil {
		return Node{}, false
	}
	for _, n := range inv.Nodes {
		if n.PrimaryMAC == m || n.BMCMAC == m || n.SecondaryMAC == m {
			return n, true
		}
	}
	return Node{}, false
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("file missing")
		}
		return pe.Err
	}
	return err
}

// readCredentials reads ipmi_user and ipmi_password; only the trailing
// newline is trimmed, so a password may have leading or inner spaces.
func readCredentials(dir string, probs *Problems) (Credentials, []string) {
	var c Credentials
	var warnings []string
	for _, name := range []string{UserFile, PasswordFile} {
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			probs.add(name, 0, "", "cannot read: %v", unwrapPathErr(err))
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			probs.add(name, 0, "", "cannot read: %v", unwrapPathErr(err))
			continue
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			probs.add(name, 0, "", "empty: the file must hold the BMC %s", strings.TrimPrefix(name, "ipmi_"))
			continue
		}
		if st.Mode().Perm()&0o077 != 0 {
			warnings = append(warnings, fmt.Sprintf("%s: readable by group or others (mode %04o); run chmod 600 %s", name, st.Mode().Perm(), path))
		}
		if name == UserFile {
			c.User = v
		} else {
			c.Password = v
		}
	}
	return c, warnings
}
