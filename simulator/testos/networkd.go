package testos

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
)

// NetworkFile is what the test OS takes from a systemd-networkd .network
// file: Racker's boot config pins the node's internal address with one
// (docs/boot-contract.md §4), and Flatcar's networkd applies it on every
// boot, before units that want network-online.target run.
type NetworkFile struct {
	Name      string
	MatchMAC  []string // lower case
	MatchName []string // globs
	// MatchAll is set when the [Match] section could not be read: the
	// file then claims every link, so its error cannot go unnoticed.
	MatchAll  bool
	DHCP      string // networkd's default is "no"
	Addresses []netip.Prefix
	Gateways  []netip.Addr
	DNS       []netip.Addr
	// Err is why the file is invalid (file:line: what), nil if it is not.
	Err error
}

// networkSections are the sections systemd-networkd knows in .network
// files; any other section is a mistake (a typo such as [Netwrok] would
// silently drop DHCP=no).
var networkSections = map[string]bool{
	"Match": true, "Link": true, "SR-IOV": true, "Network": true, "Address": true, "Neighbor": true,
	"IPv6AddressLabel": true, "RoutingPolicyRule": true, "NextHop": true, "Route": true, "DHCPv4": true,
	"DHCPv6": true, "DHCPPrefixDelegation": true, "IPv6AcceptRA": true, "DHCPServer": true,
	"DHCPServerStaticLease": true, "IPv6SendRA": true, "IPv6Prefix": true, "IPv6RoutePrefix": true,
	"LLDP": true, "CAN": true, "IPoIB": true, "QDisc": true, "Bridge": true, "BridgeFDB": true,
	"BridgeMDB": true, "BridgeVLAN": true, "LinkLayerAddress": true,
}

// ParseNetworkFile reads the [Match], [Network], [Address] and [Route] keys
// above. It never returns a nil file: a file with an error still claims
// the links its [Match] names (see PlanLink), and its Err says what is
// wrong and on which line, as networkd's log does.
func ParseNetworkFile(name, text string) NetworkFile {
	n := NetworkFile{Name: name, DHCP: "no"}
	fail := func(line int, format string, args ...any) {
		if n.Err == nil {
			n.Err = fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
		}
	}
	section := ""
	for _, ll := range numberedLines(text) {
		i, line := ll.n-1, strings.TrimSpace(ll.text)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if !networkSections[section] {
				fail(i+1, "unknown section [%s]", section)
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			fail(i+1, "missing '=' in %q", line)
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if section == "" {
			fail(i+1, "assignment %s= outside of a section", key)
			continue
		}
		bad := func(reason string) { fail(i+1, "invalid %s=%s: %s", key, value, reason) }
		switch section + "." + key {
		case "Match.MACAddress", "Match.PermanentMACAddress":
			for _, m := range strings.Fields(value) {
				hw, err := net.ParseMAC(m)
				if err != nil || len(hw) != 6 {
					bad("not a MAC address")
					n.MatchAll = true
					break
				}
				n.MatchMAC = append(n.MatchMAC, hw.String())
			}
		case "Match.Name":
			for _, g := range strings.Fields(value) {
				if _, err := path.Match(g, ""); err != nil {
					bad("not a glob")
					n.MatchAll = true
					break
				}
				n.MatchName = append(n.MatchName, g)
			}
		case "Network.DHCP":
			switch v := strings.ToLower(value); v {
			case "yes", "no", "true", "false", "1", "0", "on", "off", "ipv4", "ipv6":
				n.DHCP = v
			default:
				bad("want yes, no, ipv4 or ipv6")
			}
		case "Network.Address", "Address.Address":
			p, err := parseAddress(value)
			if err != nil {
				bad(err.Error())
				continue
			}
			n.Addresses = append(n.Addresses, p)
		case "Network.Gateway", "Route.Gateway":
			if value == "_dhcp4" || value == "_ipv6ra" {
				continue // a route via what DHCP/RA says: nothing static
			}
			a, err := netip.ParseAddr(value)
			if err != nil {
				bad("not an IP address")
				continue
			}
			n.Gateways = append(n.Gateways, a)
		case "Network.DNS":
			for _, f := range strings.Fields(value) {
				a, err := netip.ParseAddr(f)
				if err != nil {
					bad("not an IP address")
					break
				}
				n.DNS = append(n.DNS, a)
			}
		}
	}
	return n
}

// parseAddress reads an Address= value; like networkd, an IPv4 address
// without a prefix length is a /32.
func parseAddress(v string) (netip.Prefix, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an address")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address with a prefix length")
	}
	return p, nil
}

// Matches says whether the file applies to an interface; a file without a
// [Match] section matches every interface, as in networkd.
func (n NetworkFile) Matches(ifname, mac string) bool {
	if n.MatchAll {
		return true
	}
	if len(n.MatchMAC) > 0 {
		found := false
		for _, m := range n.MatchMAC {
			found = found || m == strings.ToLower(mac)
		}
		if !found {
			return false
		}
	}
	if len(n.MatchName) > 0 {
		found := false
		for _, g := range n.MatchName {
			ok, _ := path.Match(g, ifname)
			found = found || ok
		}
		if !found {
			return false
		}
	}
	return true
}

// KeepsDHCP says whether networkd runs a DHCPv4 client on the link.
func (n NetworkFile) KeepsDHCP() bool {
	switch n.DHCP {
	case "yes", "true", "ipv4", "1", "on":
		return true
	}
	return false
}

// LinkPlan is what systemd-networkd does with one link.
type LinkPlan struct {
	// File is the .network file that configures the link; "" means none
	// did, and Flatcar's own zz-default.network (DHCP=yes on every
	// Ethernet link) applies.
	File      string
	DHCP      bool
	Addresses []netip.Prefix
	Gateways  []netip.Addr
	// Err is set when the file that claims the link is invalid: the link
	// is then left unconfigured (no address, no DHCP).
	Err error
}

// PlanLink decides, as networkd does, how a link is configured: the first
// file in name order whose [Match] fits claims it; its DHCP= says whether a
// DHCP client runs (a lease the first boot's initramfs took is dropped
// with DHCP=no), and its addresses and gateways are set.
//
// An invalid file is a failure of the link it claims, never a warning
// followed by something else: networkd logs each bad line and ignores the
// assignment, so a mistyped Address= leaves the node without its static
// address while it keeps no DHCP lease either, and the link never reaches
// the configuration the file asked for. The test OS makes that visible at
// once: the link is "failed" (networkctl's word), configured with nothing,
// and the error is on the console. Falling back on DHCP instead, as the
// test OS once did, would let a node whose network file is broken report
// back as healthy through its lease — something a real rack never does.
func PlanLink(files []NetworkFile, ifname, mac string) LinkPlan {
	for _, f := range files {
		if !f.Matches(ifname, mac) {
			continue
		}
		if f.Err != nil {
			return LinkPlan{File: f.Name, Err: f.Err}
		}
		return LinkPlan{File: f.Name, DHCP: f.KeepsDHCP(), Addresses: f.Addresses, Gateways: f.Gateways}
	}
	return LinkPlan{DHCP: true}
}

type numberedLine struct {
	n    int // the line it starts on, from 1
	text string
}

// numberedLines joins backslash continuations like joinContinuations and
// keeps the number of the line each logical line starts on, for messages.
func numberedLines(text string) []numberedLine {
	var out []numberedLine
	cur, start := "", 0
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, "\r")
		if cur == "" {
			start = i + 1
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		out = append(out, numberedLine{start, cur + l})
		cur = ""
	}
	if cur != "" {
		out = append(out, numberedLine{start, cur})
	}
	return out
}
