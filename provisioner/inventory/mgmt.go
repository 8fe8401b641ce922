package inventory

import (
	"net"
	"sort"
	"strings"
)

// findManagement marks the management node: the one row with a MAC of this
// machine (or the MAC given with --mgmt-mac), and finds the PXE interface,
// the local interface with that node's secondary MAC.
func findManagement(inv *Inventory, opts Options, localMACs func() (map[string]string, error), probs *Problems) {
	local := map[string]string{}
	if opts.MgmtMAC != "" {
		m, err := NormalizeMAC(opts.MgmtMAC)
		if err != nil {
			probs.add(NodesFile, 0, "management node", "--mgmt-mac: %v", err)
			return
		}
		local[m] = "--mgmt-mac"
	}
	ifaces, err := localMACs()
	if err != nil {
		probs.add(NodesFile, 0, "management node", "cannot list local interfaces: %v", err)
		return
	}
	if opts.MgmtMAC == "" {
		for mac, name := range ifaces {
			local[mac] = name
		}
	}

	var matches []int
	for i, n := range inv.Nodes {
		for _, m := range []string{n.PrimaryMAC, n.SecondaryMAC} {
			if _, ok := local[m]; ok && m != "" {
				matches = append(matches, i)
				break
			}
		}
	}
	switch len(matches) {
	case 0:
		if opts.MgmtMAC != "" {
			probs.add(NodesFile, 0, "management node", "no row has the MAC %s given with --mgmt-mac", strings.ToLower(opts.MgmtMAC))
		} else {
			probs.add(NodesFile, 0, "management node", "no row holds a MAC of this machine (local MACs: %s); is this the management node? --mgmt-mac names it", strings.Join(sortedKeys(ifaces), ", "))
		}
		return
	case 1:
	default:
		first := inv.Nodes[matches[0]]
		for _, i := range matches[1:] {
			probs.add(NodesFile, inv.Nodes[i].Line, "management node", "this row also holds a MAC of this machine (first on line %d): there must be exactly one management node", first.Line)
		}
		return
	}
	inv.Management = matches[0]
	mgmt := inv.Nodes[inv.Management]
	if mgmt.SecondaryMAC == "" {
		probs.add(NodesFile, mgmt.Line, FieldSecondary, "missing on the management node: it names the internal (PXE) interface")
		return
	}
	if opts.PXEInterface != "" {
		inv.PXEInterface = opts.PXEInterface
		return
	}
	if name, ok := ifaces[mgmt.SecondaryMAC]; ok {
		inv.PXEInterface = name
		return
	}
	inv.Warnings = append(inv.Warnings, "PXE interface: no local interface has the management node's secondary MAC "+mgmt.SecondaryMAC+"; --pxe-interface names it")
}

// localMACs lists this machine's interfaces by MAC (lower case, colons).
func localMACs() (map[string]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, i := range ifs {
		if len(i.HardwareAddr) == 6 {
			out[i.HardwareAddr.String()] = i.Name
		}
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
