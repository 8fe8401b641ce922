package netenv

import (
	"net/netip"
	"strings"
	"testing"
)

func TestFitKeepsNamesShortAndDistinct(t *testing.T) {
	n := Names{Instance: "verylonginstance"}
	a, b := n.Iface("node10", "b"), n.Iface("node11", "b")
	if len(a) > MaxIfName || len(b) > MaxIfName {
		t.Fatalf("names too long: %q %q", a, b)
	}
	if a == b {
		t.Fatalf("two machines share the interface name %q", a)
	}
	if got := (Names{Instance: "rsim"}).Bridge("int"); got != "rsim-int" {
		t.Fatalf("short names must stay as they are, got %q", got)
	}
}

func TestMACIsStableLocalUnicastAndDistinct(t *testing.T) {
	m := MAC("rsim", 1, 2)
	if m.String() != MAC("rsim", 1, 2).String() {
		t.Fatal("MAC is not deterministic")
	}
	if m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("%s is not a locally administered unicast MAC", m)
	}
	if m.String() == MAC("rsim", 1, 3).String() || m.String() == MAC("other", 1, 2).String() {
		t.Fatal("distinct machines or instances share a MAC")
	}
}

func TestValidateRejectsBadTopologies(t *testing.T) {
	good := Topology{
		Bridges:    []Bridge{{Name: "t-int"}},
		Namespaces: []string{"t-a"},
		Veths:      []Veth{{Host: "t-a-h", Bridge: "t-int", Peer: "eth0", Namespace: "t-a"}},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good topology refused: %v", err)
	}
	cases := map[string]func(*Topology){
		"long name":      func(t *Topology) { t.Bridges[0].Name = "abcdefghijklmnop" },
		"unknown bridge": func(t *Topology) { t.Veths[0].Bridge = "nope" },
		"unknown netns":  func(t *Topology) { t.Veths[0].Namespace = "nope" },
		"duplicate":      func(t *Topology) { t.Veths[0].Host = "t-int" },
		"NAT bridge":     func(t *Topology) { t.NAT = []NAT{{Bridge: "x", Subnet: netip.MustParsePrefix("10.0.0.0/24")}} },
		"bad char":       func(t *Topology) { t.Namespaces[0] = "a b"; t.Veths[0].Namespace = "a b" },
	}
	for name, mutate := range cases {
		tp := good
		tp.Bridges = append([]Bridge(nil), good.Bridges...)
		tp.Veths = append([]Veth(nil), good.Veths...)
		tp.Namespaces = append([]string(nil), good.Namespaces...)
		mutate(&tp)
		if err := tp.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNATRulesMasqueradeOnlyTrafficLeavingTheBridge(t *testing.T) {
	rules := natRules(NAT{Bridge: "rsim-pub", Subnet: netip.MustParsePrefix("10.1.2.1/24")})
	nat := strings.Join(rules[0].Rule, " ")
	if rules[0].Table != "nat" || !strings.Contains(nat, "POSTROUTING -s 10.1.2.0/24 ! -o rsim-pub -j MASQUERADE") {
		t.Fatalf("masquerade rule: %s %s", rules[0].Table, nat)
	}
	for _, r := range rules {
		if !strings.Contains(strings.Join(r.Rule, " "), "netenv:rsim-pub") {
			t.Errorf("rule %v has no owner comment", r.Rule)
		}
	}
}
