package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/racker/racker/provisioner/inventory"
)

// PublicIP is a node's address on the public network (its secondary NIC).
type PublicIP struct {
	DHCP    bool         `json:"dhcp,omitempty"`
	Address netip.Prefix `json:"address,omitzero"` // address with prefix length
	Gateway netip.Addr   `json:"gateway,omitzero"`
	DNS     []netip.Addr `json:"dns,omitempty"`
}

// PublicIPs maps a secondary MAC (lower case, colons) to its address.
type PublicIPs map[string]PublicIP

// ParsePublicIPs reads the --public-ips file, an INI file with one section
// per secondary MAC:
//
//	[00:11:22:33:44:40]
//	ip_addr = 203.0.113.10/24
//	gateway = 203.0.113.1
//	dns = 1.1.1.1, 9.9.9.9
//
//	[00:11:22:33:44:50]
//	DHCP
//
// Every problem is an error naming the line: a key given twice is refused
// rather than silently ignored, as earlier tools did with later gateway and
// DNS entries.
func ParsePublicIPs(name string, r io.Reader) (PublicIPs, error) {
	out := PublicIPs{}
	var probs []string
	bad := func(line int, format string, args ...any) {
		probs = append(probs, fmt.Sprintf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	sc := bufio.NewScanner(r)
	var mac string
	var cur PublicIP
	seen := map[string]bool{}
	start := 0
	flush := func() {
		if mac == "" {
			return
		}
		switch {
		case cur.DHCP && (cur.Address.IsValid() || cur.Gateway.IsValid() || len(cur.DNS) > 0):
			bad(start, "[%s]: DHCP and a static address at once", mac)
		case !cur.DHCP && !cur.Address.IsValid():
			bad(start, "[%s]: no ip_addr (or DHCP)", mac)
		case cur.Gateway.IsValid() && !cur.Address.Contains(cur.Gateway):
			bad(start, "[%s]: gateway %s is outside %s", mac, cur.Gateway, cur.Address.Masked())
		default:
			out[mac] = cur
		}
	}
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, ";") {
			continue
		}
		if strings.HasPrefix(s, "[") {
			flush()
			mac, cur, seen, start = "", PublicIP{}, map[string]bool{}, line
			if !strings.HasSuffix(s, "]") {
				bad(line, "section header %q lacks ]", s)
				continue
			}
			m, err := inventory.NormalizeMAC(strings.TrimSpace(s[1 : len(s)-1]))
			if err != nil {
				bad(line, "section [%s]: %v", s[1:len(s)-1], err)
				continue
			}
			if _, dup := out[m]; dup {
				bad(line, "section [%s] given twice", m)
				continue
			}
			mac = m
			continue
		}
		if mac == "" {
			if start == 0 {
				bad(line, "%q outside a [MAC] section", s)
			}
			continue
		}
		key, val, hasEq := strings.Cut(s, "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !hasEq {
			if key == "dhcp" {
				cur.DHCP = true
				continue
			}
			bad(line, "%q: want key = value, or DHCP", s)
			continue
		}
		if seen[key] {
			bad(line, "[%s]: %s given twice", mac, key)
			continue
		}
		seen[key] = true
		switch key {
		case "ip_addr":
			if strings.EqualFold(val, "dhcp") {
				cur.DHCP = true
				continue
			}
			p, err := netip.ParsePrefix(val)
			if err != nil || !p.Addr().Is4() {
				bad(line, "ip_addr %q: want an IPv4 address with prefix length, e.g. 203.0.113.10/24", val)
				continue
			}
			cur.Address = p
		case "gateway":
			a, err := netip.ParseAddr(val)
			if err != nil {
				bad(line, "gateway %q: not an IP address", val)
				continue
			}
			cur.Gateway = a
		case "dns":
			for _, f := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == ' ' }) {
				a, err := netip.ParseAddr(f)
				if err != nil {
					bad(line, "dns %q: not an IP address", f)
					continue
				}
				cur.DNS = append(cur.DNS, a)
			}
		default:
			bad(line, "unknown key %q (want ip_addr, gateway, dns)", key)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("%d problem(s):\n  %s", len(probs), strings.Join(probs, "\n  "))
	}
	return out, nil
}
