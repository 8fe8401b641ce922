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

// ParsePublicIPs reads the --public-ips file in upstream Racker's format,
// an INI file with one section per secondary MAC, as its wizard prefilled
// it (every node's section with empty values):
//
//	[00:11:22:33:44:40]
//	ip_addr = 203.0.113.10/24
//	gateway = 203.0.113.1
//	dns = 1.1.1.1, 9.9.9.9
//
//	[00:11:22:33:44:50]
//	ip_addr =
//	gateway =
//	dns =
//
// A section whose ip_addr is empty or missing means DHCP, and its gateway
// and dns are ignored (so is a bare "DHCP" line, or ip_addr = dhcp). A
// static address needs a gateway and DNS; a section that gives none reuses
// those of the static section before it, so a rack on one subnet names
// them once. Every problem is an error naming the line: a key given twice
// in a section is refused rather than silently ignored, as the old shell
// parser did.
func ParsePublicIPs(name string, r io.Reader) (PublicIPs, error) {
	p := ipParser{name: name, out: PublicIPs{}}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		p.line(line, strings.TrimSpace(sc.Text()))
	}
	p.flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(p.probs) > 0 {
		return nil, fmt.Errorf("%d problem(s):\n  %s", len(p.probs), strings.Join(p.probs, "\n  "))
	}
	return p.out, nil
}

// ipParser is ParsePublicIPs' state between lines.
type ipParser struct {
	name  string
	out   PublicIPs
	probs []string

	mac     string // current section, "" before the first or after a bad header
	start   int    // line of the current section header, 0 before the first
	cur     PublicIP
	dhcp    bool // a bare DHCP line or ip_addr = dhcp
	seen    map[string]bool
	lastGW  netip.Addr   // gateway of the previous static section
	lastDNS []netip.Addr // DNS of the previous static section
}

func (p *ipParser) bad(line int, format string, args ...any) {
	p.probs = append(p.probs, fmt.Sprintf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...)))
}

func (p *ipParser) line(line int, s string) {
	if s == "" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, ";") {
		return
	}
	if strings.HasPrefix(s, "[") {
		p.flush()
		p.mac, p.cur, p.dhcp, p.seen, p.start = "", PublicIP{}, false, map[string]bool{}, line
		if !strings.HasSuffix(s, "]") {
			p.bad(line, "section header %q lacks ]", s)
			return
		}
		m, err := inventory.NormalizeMAC(strings.TrimSpace(s[1 : len(s)-1]))
		if err != nil {
			p.bad(line, "section [%s]: %v", s[1:len(s)-1], err)
			return
		}
		if _, dup := p.out[m]; dup {
			p.bad(line, "section [%s] given twice", m)
			return
		}
		p.mac = m
		return
	}
	if p.mac == "" {
		if p.start == 0 {
			p.bad(line, "%q outside a [MAC] section", s)
		}
		return
	}
	key, val, hasEq := strings.Cut(s, "=")
	key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
	if !hasEq {
		if key == "dhcp" {
			p.dhcp = true
			return
		}
		p.bad(line, "%q: want key = value, or DHCP", s)
		return
	}
	if p.seen[key] {
		p.bad(line, "[%s]: %s given twice", p.mac, key)
		return
	}
	p.seen[key] = true
	if val == "" {
		return // the prefilled form's empty value: not given
	}
	switch key {
	case "ip_addr":
		if strings.EqualFold(val, "dhcp") {
			p.dhcp = true
			return
		}
		a, err := netip.ParsePrefix(val)
		if err != nil || !a.Addr().Is4() {
			p.bad(line, "ip_addr %q: want an IPv4 address with prefix length, e.g. 203.0.113.10/24 (empty for DHCP)", val)
			return
		}
		p.cur.Address = a
	case "gateway":
		a, err := netip.ParseAddr(val)
		if err != nil {
			p.bad(line, "gateway %q: not an IP address", val)
			return
		}
		p.cur.Gateway = a
	case "dns":
		for _, f := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == ' ' }) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				p.bad(line, "dns %q: not an IP address", f)
				continue
			}
			p.cur.DNS = append(p.cur.DNS, a)
		}
	default:
		p.bad(line, "unknown key %q (want ip_addr, gateway, dns)", key)
	}
}

// flush ends the current section: DHCP, or a static address that has (or
// inherits) a gateway and DNS.
func (p *ipParser) flush() {
	if p.mac == "" {
		return
	}
	cur := p.cur
	switch {
	case p.dhcp && cur.Address.IsValid():
		p.bad(p.start, "[%s]: DHCP and a static address at once", p.mac)
		return
	case !cur.Address.IsValid():
		p.out[p.mac] = PublicIP{DHCP: true}
		return
	}
	inherited := ""
	if !cur.Gateway.IsValid() {
		cur.Gateway, inherited = p.lastGW, " (from an earlier section; give this one its own)"
	}
	if len(cur.DNS) == 0 {
		cur.DNS = p.lastDNS
	}
	switch {
	case !cur.Gateway.IsValid() || len(cur.DNS) == 0:
		p.bad(p.start, "[%s]: a static address needs a gateway and dns (here or in an earlier static section)", p.mac)
	case !cur.Address.Contains(cur.Gateway):
		p.bad(p.start, "[%s]: gateway %s%s is outside %s", p.mac, cur.Gateway, inherited, cur.Address.Masked())
	default:
		p.out[p.mac] = cur
		p.lastGW, p.lastDNS = cur.Gateway, cur.DNS
	}
}

// Static returns the entries with a static address.
func (ips PublicIPs) Static() PublicIPs {
	out := PublicIPs{}
	for m, ip := range ips {
		if !ip.DHCP {
			out[m] = ip
		}
	}
	return out
}
