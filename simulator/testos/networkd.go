package testos

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// NetworkFile is what the test OS takes from a systemd-networkd .network
// file: Racker's boot config pins the node's internal address with one
// (docs/boot-contract.md §4), and Flatcar applies it before the booted
// callback runs, so the test OS does too.
type NetworkFile struct {
	Name      string
	MatchMAC  []string // lower case
	MatchName []string // globs
	DHCP      string   // networkd's default is "no"
	Addresses []netip.Prefix
	Gateways  []netip.Addr
	DNS       []netip.Addr
}

// ParseNetworkFile reads the [Match], [Network] and [Address] keys above.
func ParseNetworkFile(name, text string) (NetworkFile, error) {
	n := NetworkFile{Name: name, DHCP: "no"}
	err := iniEntries(text, func(section, key, value string) error {
		var err error
		switch section + "." + key {
		case "Match.MACAddress", "Match.PermanentMACAddress":
			for _, m := range strings.Fields(value) {
				n.MatchMAC = append(n.MatchMAC, strings.ToLower(m))
			}
		case "Match.Name":
			n.MatchName = append(n.MatchName, strings.Fields(value)...)
		case "Network.DHCP":
			n.DHCP = strings.ToLower(value)
		case "Network.Address", "Address.Address":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(value); err == nil {
				n.Addresses = append(n.Addresses, p)
			}
		case "Network.Gateway", "Route.Gateway":
			var a netip.Addr
			if a, err = netip.ParseAddr(value); err == nil {
				n.Gateways = append(n.Gateways, a)
			}
		case "Network.DNS":
			for _, f := range strings.Fields(value) {
				var a netip.Addr
				if a, err = netip.ParseAddr(f); err != nil {
					break
				}
				n.DNS = append(n.DNS, a)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %s=%s: %w", name, key, value, err)
		}
		return nil
	})
	return n, err
}

// Matches says whether the file applies to an interface; a file without a
// [Match] section matches every interface, as in networkd.
func (n NetworkFile) Matches(ifname, mac string) bool {
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

// KeepsDHCP says whether networkd would keep running DHCPv4 on the link.
func (n NetworkFile) KeepsDHCP() bool {
	switch n.DHCP {
	case "yes", "true", "ipv4", "1", "on":
		return true
	}
	return false
}
