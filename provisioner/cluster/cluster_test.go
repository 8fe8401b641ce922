package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/vincent-petithory/dataurl"
	"github.com/zclconf/go-cty/cty"

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
	p, err := plan.Make(inv, plan.Choices{ClusterName: `lab"${x}`, ControllerType: "red", StorageType: "purple", StorageNodes: 1}, plan.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The written files parse as HCL, and the values read back through the
// lokocfg's var.* references are the plan's.
func TestLokomotiveConfigParsesBack(t *testing.T) {
	p := testPlan(t)
	dir := t.TempDir()
	var out bytes.Buffer
	err := Apply(context.Background(), Lokomotive, Input{Plan: p, StateDir: dir, SSHPublicKey: "ssh-ed25519 AAAA racker\n",
		Domain: "k8s.example", MatchboxURL: "http://172.24.213.1:8080", Stdout: &out,
		LookPath: func(string) (string, error) { return "", errors.New("not found") }})
	if !errors.Is(err, ErrNotApplied) {
		t.Fatalf("without lokoctl: %v, want ErrNotApplied", err)
	}
	ldir := filepath.Join(dir, LokomotiveDir)
	if !strings.Contains(out.String(), "cd "+ldir+" && lokoctl cluster apply --confirm") {
		t.Errorf("without lokoctl the command to run is printed; got %q", out.String())
	}
	parser := hclparse.NewParser()
	vf, diags := parser.ParseHCLFile(filepath.Join(ldir, LokocfgVarFile))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	attrs, diags := vf.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	vars := map[string]cty.Value{}
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		vars[name] = v
	}
	cf, diags := parser.ParseHCLFile(filepath.Join(ldir, LokocfgFile))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := cf.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}}, {Type: "cluster", LabelNames: []string{"platform"}}}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var cluster *hcl.Block
	declared := map[string]bool{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			declared[b.Labels[0]] = true
		case "cluster":
			cluster = b
		}
	}
	for name := range vars {
		if !declared[name] {
			t.Errorf("lokocfg.vars sets %s, which baremetal.lokocfg does not declare", name)
		}
	}
	if cluster == nil || cluster.Labels[0] != "bare-metal" {
		t.Fatalf("no cluster \"bare-metal\" block")
	}
	cattrs, diags := cluster.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ectx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}
	get := func(name string) cty.Value {
		a, ok := cattrs[name]
		if !ok {
			t.Fatalf("cluster block lacks %s", name)
		}
		v, diags := a.Expr.Value(ectx)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		return v
	}
	strs := func(v cty.Value) []string {
		var out []string
		for _, e := range v.AsValueSlice() {
			out = append(out, e.AsString())
		}
		return out
	}
	if got := get("cluster_name").AsString(); got != `lab"${x}` {
		t.Errorf("cluster_name %q: quoting lost", got)
	}
	ctrl, workers := p.Controllers(), p.Workers()
	if got := strs(get("controller_macs")); len(got) != 1 || got[0] != ctrl[0].PrimaryMAC || ctrl[0].PrimaryMAC != "00:11:22:33:44:10" {
		t.Errorf("controller_macs %v, plan controllers %v", got, ctrl)
	}
	if got := strs(get("worker_names")); len(got) != 2 || got[0] != workers[0].Hostname || got[1] != workers[1].Hostname {
		t.Errorf("worker_names %v", got)
	}
	if got := strs(get("worker_domains")); got[0] != workers[0].Hostname+".k8s.example" {
		t.Errorf("worker_domains %v", got)
	}
	if got := strs(get("ssh_pubkeys")); len(got) != 1 || got[0] != "ssh-ed25519 AAAA racker" {
		t.Errorf("ssh_pubkeys %v", got)
	}
	if get("install_to_smallest_disk").AsString() != "true" || get("k8s_domain_name").AsString() != "k8s.example" {
		t.Error("install disk or domain wrong")
	}
	labels := get("node_specific_labels")
	for _, w := range workers {
		l := labels.GetAttr(w.Hostname)
		if l.GetAttr(LabelNodeType).AsString() != "purple" || l.GetAttr(LabelStorage).AsString() != map[bool]string{true: "true", false: "false"}[w.Storage] {
			t.Errorf("labels of %s: %#v", w.Hostname, l)
		}
	}
	if !workers[0].Storage || workers[1].Storage {
		t.Errorf("storage choice not in the plan: %+v", workers)
	}
}

func TestLokoctlRunsWhenOnPath(t *testing.T) {
	var ranDir string
	var ranArgs []string
	err := Apply(context.Background(), Lokomotive, Input{Plan: testPlan(t), StateDir: t.TempDir(),
		LookPath: func(string) (string, error) { return "/opt/bin/lokoctl", nil },
		Run: func(ctx context.Context, dir, bin string, args ...string) error {
			ranDir, ranArgs = dir, args
			return errors.New("exit status 1")
		}})
	if err == nil || !strings.Contains(err.Error(), "lokoctl cluster apply") {
		t.Errorf("a failing lokoctl is an error naming the command; got %v", err)
	}
	if filepath.Base(ranDir) != LokomotiveDir || strings.Join(ranArgs, " ") != "cluster apply --confirm --verbose" {
		t.Errorf("ran in %s with %v", ranDir, ranArgs)
	}
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
`
	ips, err := ParsePublicIPs("public.ini", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	a := ips["00:11:22:33:44:40"]
	if a.Address.String() != "203.0.113.10/24" || a.Gateway.String() != "203.0.113.1" || len(a.DNS) != 2 || a.DNS[1].String() != "9.9.9.9" {
		t.Errorf("static entry %+v", a)
	}
	if !ips["00:11:22:33:44:50"].DHCP || !ips["00:11:22:33:44:70"].DHCP || len(ips) != 3 {
		t.Errorf("DHCP entries: %+v", ips)
	}
	bad := map[string]string{
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 203.0.113.1\ngateway = 203.0.113.2\n": "public.ini:4: [00:11:22:33:44:40]: gateway given twice",
		"[00:11:22:33:44:40]\ngateway = 203.0.113.1\n":                                                   "no ip_addr",
		"[nope]\nDHCP\n": "public.ini:1: section [nope]",
		"[00:11:22:33:44:40]\nip_addr = 203.0.113.10/24\ngateway = 198.51.100.1\n": "outside 203.0.113.0/24",
		"ip_addr = 1.2.3.4/24\n":                                 "outside a [MAC] section",
		"[00:11:22:33:44:40]\nDHCP\nip_addr = 1.2.3.4/24\n":      "DHCP and a static address",
		"[00:11:22:33:44:40]\nDHCP\n[00:11:22:33:44:40]\nDHCP\n": "given twice",
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
			Address: netip.PrefixFrom(n.IP, 24), SSHKeys: []string{"ssh-ed25519 AAAA"}, Snippets: snips})
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
