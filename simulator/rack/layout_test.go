package rack

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanGeneratesStableMachinesWithRoundRobinTypes(t *testing.T) {
	c := Config{Name: "rsim", Nodes: 3, Types: []string{"red", "blue"}, UEFITypes: []string{"blue"}}
	if err := c.complete(); err != nil {
		t.Fatal(err)
	}
	ms, err := planMachines(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || ms[0].Name != "mgmt" || ms[3].Name != "n3" {
		t.Fatalf("machines: %+v", ms)
	}
	wantTypes := []string{"red", "red", "blue", "red"}
	wantFW := []string{"", "bios", "uefi", "bios"}
	seen := map[string]bool{}
	for i, m := range ms {
		if m.Type != wantTypes[i] || m.Firmware != wantFW[i] {
			t.Errorf("%s: type %s firmware %s, want %s %s", m.Name, m.Type, m.Firmware, wantTypes[i], wantFW[i])
		}
		for _, mac := range []string{m.PrimaryMAC, m.BMCMAC, m.SecondaryMAC} {
			if seen[mac] {
				t.Errorf("MAC %s used twice", mac)
			}
			seen[mac] = true
		}
	}
	again, _ := planMachines(c)
	if again[2].PrimaryMAC != ms[2].PrimaryMAC {
		t.Fatal("MACs change between runs: leases and nodes.csv would go stale")
	}
}

func TestNodesCSVRoundTripsAndPicksTheMgmtRow(t *testing.T) {
	c := Config{Name: "rsim", Nodes: 2}
	_ = c.complete()
	ms, _ := planMachines(c)
	// Put the management node last in a user's file: it is found by comment.
	rows := strings.Split(strings.TrimSpace(nodesCSV(ms)), "\n")
	rows = append([]string{rows[0]}, append(rows[2:], rows[1])...)
	p := filepath.Join(t.TempDir(), "nodes.csv")
	if err := os.WriteFile(p, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := planMachines(Config{Name: "other", NodesCSV: p, Types: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].PrimaryMAC != ms[0].PrimaryMAC || got[1].PrimaryMAC != ms[1].PrimaryMAC || got[2].BMCMAC != ms[2].BMCMAC {
		t.Fatalf("from nodes.csv: %+v\nwant MACs of %+v", got, ms)
	}
	if got[1].Firmware != "bios" {
		t.Fatalf("firmware %q", got[1].Firmware)
	}
}

func TestNodesCSVNeedsEveryMAC(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nodes.csv")
	os.WriteFile(p, []byte("00:11:22:33:44:00, 00:11:22:33:44:01, 00:11:22:33:44:30, red, mgmt\n00:11:22:33:44:10, , , red,\n"), 0o644)
	if _, err := planMachines(Config{Name: "x", NodesCSV: p}); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("a row without BMC MAC: %v", err)
	}
}

func TestConfigRejectsNamesThatCannotFitInterfaceNames(t *testing.T) {
	for _, n := range []string{"toolongname", "Upper", "1abc", "a-b"} {
		c := Config{Name: n}
		if err := c.complete(); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestPublicSubnetAvoidsRoutedPrefixes(t *testing.T) {
	first, err := publicSubnet("rsim", nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := publicSubnet("rsim", []netip.Prefix{first})
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.Overlaps(first) {
		t.Fatalf("picked %s although %s is routed", second, first)
	}
}

func TestTopologyIsValidAndWiresTheSwappedCables(t *testing.T) {
	c := Config{Name: "abcdefgh", Nodes: 60}
	_ = c.complete()
	ms, _ := planMachines(c)
	tp := topology(c.Name, ms, netip.MustParsePrefix("10.213.50.0/24"), true)
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	mgmtPrimary, mgmtSecondary := tp.Veths[0], tp.Veths[1]
	if mgmtPrimary.Bridge != "abcdefgh-pub" || mgmtPrimary.MAC.String() != ms[0].PrimaryMAC {
		t.Errorf("management primary NIC must be on the public bridge: %+v", mgmtPrimary)
	}
	if mgmtSecondary.Bridge != "abcdefgh-int" || mgmtSecondary.MAC.String() != ms[0].SecondaryMAC || len(mgmtSecondary.Addresses) != 0 {
		t.Errorf("management secondary NIC must be on the internal bridge, address left to racker serve: %+v", mgmtSecondary)
	}
	if len(tp.Namespaces) != 61 || tp.Veths[61].MAC.String() != ms[60].BMCMAC {
		t.Errorf("one BMC namespace per server with the BMC MAC")
	}
	if noBMC := topology(c.Name, ms, netip.MustParsePrefix("10.213.50.0/24"), false); len(noBMC.Namespaces) != 1 {
		t.Errorf("--no-bmc still makes BMC namespaces")
	}
}

func TestInstallFailRuleTargetsOneNodesImageDownload(t *testing.T) {
	r := strings.Join(installFailRule(Machine{Name: "n2", PrimaryMAC: "52:54:00:00:02:01"}), " ")
	for _, want := range []string{"--mac-source 52:54:00:00:02:01", "/flatcar_production_image.bin.bz2 HTTP/1.", "tcp-reset", "racker-sim:install-fail:n2"} {
		if !strings.Contains(r, want) {
			t.Errorf("rule %q lacks %q", r, want)
		}
	}
}

func TestFirstBootDevice(t *testing.T) {
	x := `<domain><devices><disk><boot order='2'/></disk><interface><boot order='1'/></interface></devices></domain>`
	if got := firstBootDevice(x); got != "network" {
		t.Fatalf("got %s", got)
	}
	x = `<domain><devices><disk><boot order='1'/></disk><interface><boot order='2'/></interface></devices></domain>`
	if got := firstBootDevice(x); got != "disk" {
		t.Fatalf("got %s", got)
	}
}

// A --no-bmc rack's nodes.csv says that no BMC answers at the BMC MACs
// (the format requires the column) and names each node's domain, and
// the management node sees libvirtd's sockets.
func TestNoBMCRackSaysSoInNodesCSV(t *testing.T) {
	c := Config{Name: "lap", Nodes: 2, NoBMC: true}
	if err := c.complete(); err != nil {
		t.Fatal(err)
	}
	ms, err := planMachines(c)
	if err != nil {
		t.Fatal(err)
	}
	csv := nodesCSV(ms)
	for _, want := range []string{"no BMC (laptop mode: libvirt domain lap-n1)", "no BMC (laptop mode: libvirt domain lap-n2)"} {
		if !strings.Contains(csv, want) {
			t.Errorf("nodes.csv lacks %q:\n%s", want, csv)
		}
	}
	s := &State{Name: "lap", Dir: "/x", NoBMC: true}
	if s.Node().Libvirt == "" {
		t.Error("laptop mode: the management node does not get libvirtd's sockets")
	}
	s.NoBMC = false
	if s.Node().Libvirt != "" {
		t.Error("a rack with BMCs shares libvirtd's sockets with the management node")
	}
	c.NoBMC = false
	ms, _ = planMachines(c)
	if strings.Contains(nodesCSV(ms), "no BMC") {
		t.Error("a rack with BMCs says it has none")
	}
}
