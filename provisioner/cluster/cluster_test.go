package cluster

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/vincent-petithory/dataurl"

	"github.com/racker/racker/provisioner/ignition"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

func testPlan(t *testing.T) *plan.Plan {
	t.Helper()
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Line: 2, PrimaryMAC: "00:11:22:33:44:00", BMCMAC: "00:11:22:33:44:01", SecondaryMAC: "00:11:22:33:44:30", Type: "red"},
		{Line: 3, PrimaryMAC: "00:11:22:33:44:10", BMCMAC: "00:11:22:33:44:11", SecondaryMAC: "00:11:22:33:44:40", Type: "red"},
		{Line: 4, PrimaryMAC: "00:11:22:33:44:20", BMCMAC: "00:11:22:33:44:21", SecondaryMAC: "00:11:22:33:44:50", Type: "purple"},
		{Line: 5, PrimaryMAC: "00:11:22:33:44:60", BMCMAC: "00:11:22:33:44:61", SecondaryMAC: "00:11:22:33:44:70", Type: "purple"},
	}}
	p, err := plan.Make(inv, plan.Choices{ClusterName: "lab", ControllerType: "red", StorageType: "purple", StorageNodes: 1}, plan.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlatcarProfileIsDone(t *testing.T) {
	dir := t.TempDir()
	if err := Apply(context.Background(), Flatcar, Input{Plan: testPlan(t), StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, LokomotiveDir)); err == nil {
		t.Error("flatcar profile wrote Lokomotive files")
	}
	if _, err := ParseProfile("kubeadm"); err == nil {
		t.Error("unknown profile accepted")
	}
}

// Upstream Racker's format, as its wizard prefilled it: empty values mean
// not given, an empty ip_addr means DHCP, and a static section without
// gateway and dns reuses the previous static section's.
func TestParsePublicIPs(t *testing.T) {
	good := `# public addresses
[00:11:22:33:44:40]
ip_addr = 203.0.113.10/24
gateway = 203.0.113.1
dns = 1.1.1.1, 9.9.9.9

[00-11-22-33-44-50]
DHCP
[00:11:22:33:44:70]
ip_addr = dhcp
[00:11:22:33:44:80]
ip_addr =
gateway = 198.51.100.1
dns =

[00:11:22:33:44:90]
ip_addr = 203.0.113.12/24
gateway =
dns =
[00:11:22:33:44:a0]
`
	ips, err := ParsePublicIPs("public.ini", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	a := ips["00:11:22:33:44:40"]
	if a.Address.String() != "203.0.113.10/24" || a.Gateway.String() != "203.0.113.1" || len(a.DNS) != 2 || a.DNS[1].String() != "9.9.9.9" {
		t.Errorf("static entry %+v", a)
	}
	for _, m := range []string{"00:11:22:33:44:50", "00:11:22:33:44:70", "00:11:22:33:44:80", "00:11:22:33:44:a0"} {
		if ip := ips[m]; !ip.DHCP || ip.Gateway.IsValid() {
			t.Errorf("%s: %+v, want DHCP (an empty or missing ip_addr; its gateway ignored)", m, ip)
		}
	}
	b := ips["00:11:22:33:44:90"]
	if b.Address.String() != "203.0.113.12/24" || b.Gateway != a.Gateway || len(b.DNS) != 2 {
		t.Errorf("a static entry without gateway and dns reuses the previous one's: %+v", b)
	}
	if len(ips) != 6 || len(ips.Static()) != 2 {
		t.Errorf("%d entries, %d static: %+v", len(ips), len(ips.Static()), ips)
	}
	bad := map[string]string{
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 203.0.113.1\ngateway = 203.0.113.2\ndns = 1.1.1.1\n": "public.ini:4: [00:11:22:33:44:40]: gateway given twice",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\n":                                                              "public.ini:1: [00:11:22:33:44:40]: a static address needs a gateway and dns",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 203.0.113.1\n":                                       "needs a gateway and dns",
		"[nope]\nDHCP\n": "public.ini:1: section [nope]",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 198.51.100.1\ndns = 1.1.1.1\n":                                                "outside 203.0.113.0/24",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 203.0.113.1\ndns = 1.1.1.1\n[00:11:22:33:44:50]\nip_addr = 198.51.100.7/24\n": "public.ini:5: [00:11:22:33:44:50]: gateway 203.0.113.1 (from an earlier section",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10\n":                                                                                          "ip_addr \"203.0.113.10\": want an IPv4 address with prefix length",
		"[00:11:22:33:44:40]\nmtu = 9000\n":                                                                                                      "unknown key \"mtu\"",
		"ip_addr = 1.2.3.4/24\n":                                                                                                                 "outside a [MAC] section",
		"[00:11:22:33:44:40]\nDHCP\nip_addr = 1.2.3.4/24\n":                                                                                      "DHCP and a static address",
		"[00:11:22:33:44:40]\nDHCP\n[00:11:22:33:44:40]\nDHCP\n":                                                                                 "given twice",
	}
	for in, want := range bad {
		_, err := ParsePublicIPs("public.ini", strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", in, err, want)
		}
	}
}

// The --public-ips snippets merge into the real boot config: the secondary
// NIC's networkd file is there, with the static address or DHCP.
func TestPublicIPSnippetsReachTheBootConfig(t *testing.T) {
	p := testPlan(t)
	dir := t.TempDir()
	ips, err := ParsePublicIPs("ips", strings.NewReader("[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 203.0.113.1\ndns = 1.1.1.1\n[00:11:22:33:44:50]\nDHCP\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePublicIPSnippets(dir, p, ips); err != nil {
		t.Fatal(err)
	}
	node := func(mac string) plan.Node {
		n, ok := p.Find(mac)
		if !ok {
			t.Fatalf("no node %s", mac)
		}
		return n
	}
	for mac, want := range map[string]string{
		"00:11:22:33:44:10": "MACAddress=00:11:22:33:44:40\n\n[Network]\nAddress=203.0.113.10/24\nGateway=203.0.113.1\nDNS=1.1.1.1\n",
		"00:11:22:33:44:20": "MACAddress=00:11:22:33:44:50\n\n[Network]\nDHCP=yes\n",
	} {
		n := node(mac)
		snips, err := ignition.Snippets(dir, n.Type, n.PrimaryMAC)
		if err != nil || len(snips) != 1 {
			t.Fatalf("%s: snippets %v, %v", mac, snips, err)
		}
		cfg, err := ignition.Boot(ignition.BootParams{MAC: n.PrimaryMAC, BaseURL: "http://172.24.213.1:8080", Hostname: "node-" + strings.ReplaceAll(mac, ":", ""),
			Address: netip.PrefixFrom(n.IP, 24), SSHKeys: []string{"ssh-ed25519 AAAA"}, Snippets: snips, Token: "test-token-0123456789"})
		if err != nil {
			t.Fatalf("%s: boot config with the snippet: %v", mac, err)
		}
		parsed, rpt, err := v3_4.Parse(cfg)
		if err != nil || rpt.IsFatal() {
			t.Fatalf("%s: %v %s", mac, err, rpt.String())
		}
		found := false
		for _, f := range parsed.Storage.Files {
			if f.Path == PublicNetworkFile {
				src, _ := dataurl.DecodeString(*f.Contents.Source)
				if src == nil || !strings.Contains(string(src.Data), want) {
					t.Errorf("%s: %s holds %q, want %q", mac, f.Path, src, want)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("%s: boot config lacks %s", mac, PublicNetworkFile)
		}
	}
	// An operator's snippet is never overwritten; a dropped entry's snippet is removed.
	opPath := filepath.Join(dir, ignition.NodeSnippetDir, "00:11:22:33:44:10.ign")
	os.WriteFile(opPath, []byte(`{"ignition":{"version":"3.4.0"}}`), 0o644)
	if err := WritePublicIPSnippets(dir, p, ips); err == nil || !strings.Contains(err.Error(), "operator's snippet") {
		t.Errorf("overwriting an operator's snippet: %v", err)
	}
	os.Remove(opPath)
	delete(ips, "00:11:22:33:44:50")
	if err := WritePublicIPSnippets(dir, p, ips); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ignition.NodeSnippetDir, "00:11:22:33:44:20.ign")); !os.IsNotExist(err) {
		t.Errorf("snippet of a dropped entry left behind: %v", err)
	}
}
