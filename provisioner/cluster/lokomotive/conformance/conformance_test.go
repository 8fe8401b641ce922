package conformance

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/kinvolk/lokomotive/pkg/config"
	"github.com/kinvolk/lokomotive/pkg/platform/baremetal"
	"github.com/zclconf/go-cty/cty"
)

// rack is the rack.json testracks writes next to each configuration: the
// plan (racker plan -o json) and the choices it was written from.
type rack struct {
	Name string `json:"name"`
	Plan struct {
		ClusterName string `json:"cluster_name"`
		Management  node   `json:"management"`
		Nodes       []node `json:"nodes"`
	} `json:"plan"`
	Dir         string `json:"dir"`
	Vars        string `json:"vars"`
	Domain      string `json:"domain"`
	SSHKey      string `json:"ssh_key"`
	InstallDisk string `json:"install_disk"`
	OSChannel   string `json:"os_channel"`
	OSVersion   string `json:"os_version"`
	MatchboxURL string `json:"matchbox_url"`
	Matchbox    struct {
		Endpoint, CAPath, ClientCertPath, ClientKeyPath string
	} `json:"matchbox"`
	Components struct {
		WebUI   bool
		Storage string
		Backup  *struct{ Bucket, Region, AccessKeyID string }
	} `json:"components"`
	PublicIPs map[string]struct {
		DHCP             bool
		Address, Gateway string
	} `json:"public_ips"`
	Credentials string `json:"credentials"`
}

type node struct {
	PrimaryMAC   string `json:"primary_mac"`
	SecondaryMAC string `json:"secondary_mac"`
	Type         string `json:"type"`
	Role         string `json:"role"`
	Storage      bool   `json:"storage"`
	Hostname     string `json:"hostname"`
	IP           string `json:"ip"`
}

func (r *rack) role(role string) []node {
	var out []node
	for _, n := range r.Plan.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// storageNodes carry the provider's label: storage nodes, when a
// provider is chosen.
func (r *rack) storageNodes() []node {
	var out []node
	for _, n := range r.Plan.Nodes {
		if n.Storage && r.Components.Storage != "" && r.Components.Storage != "none" {
			out = append(out, n)
		}
	}
	return out
}

// wantComponents are the components the choices ask for, as upstream
// Racker offered them.
func (r *rack) wantComponents() []string {
	want := []string{"flatcar-linux-update-operator"}
	if r.Components.WebUI {
		want = append(want, "web-ui", "metrics-server")
	}
	switch r.Components.Storage {
	case "rook":
		want = append(want, "rook", "rook-ceph")
	case "openebs":
		want = append(want, "openebs-operator", "openebs-storage-class")
	}
	if r.Components.Backup != nil {
		want = append(want, "velero")
	}
	return want
}

// writeRacks runs Racker's testracks command in Racker's own module and
// returns the racks it wrote: Racker's generator runs with Racker's
// dependencies, this check with Lokomotive's.
func writeRacks(t *testing.T) []*rack {
	t.Helper()
	out := t.TempDir()
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "run", "./provisioner/cluster/lokomotive/testracks", "-out", out)
	cmd.Dir = "../../../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Racker's generator (go run ./provisioner/cluster/lokomotive/testracks): %v\n%s", err, b)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var racks []*rack
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(out, e.Name(), "rack.json"))
		if err != nil {
			t.Fatal(err)
		}
		r := &rack{}
		if err := json.Unmarshal(b, r); err != nil {
			t.Fatalf("%s/rack.json: %v", e.Name(), err)
		}
		racks = append(racks, r)
	}
	// The racks the issue names: 1 and 3 controllers, storage, static public addresses.
	var one, three, storage, static bool
	for _, r := range racks {
		n := len(r.role("controller"))
		one, three = one || n == 1, three || n == 3
		storage = storage || len(r.storageNodes()) > 0
		for _, ip := range r.PublicIPs {
			static = static || !ip.DHCP
		}
	}
	if !one || !three || !storage || !static {
		t.Fatalf("the test racks lack a case: 1 controller %v, 3 controllers %v, storage %v, static public addresses %v", one, three, storage, static)
	}
	return racks
}

// TestLokomotiveLoadsRackerConfig has Lokomotive v0.9.0 load each rack's
// configuration the way `lokoctl cluster apply` does before it runs
// Terraform (see load), and checks that what Lokomotive hands Terraform is
// the plan and the choices.
func TestLokomotiveLoadsRackerConfig(t *testing.T) {
	for _, r := range writeRacks(t) {
		t.Run(r.Name, func(t *testing.T) {
			g := load(t, r)
			tf := g.cluster
			ctrl, workers := r.role("controller"), r.role("worker")
			for k, want := range map[string]string{
				"controller_macs": macs(ctrl), "worker_macs": macs(workers),
				"controller_names": names(ctrl, ""), "worker_names": names(workers, ""),
				"controller_domains": names(ctrl, "."+r.Domain), "worker_domains": names(workers, "."+r.Domain),
				"ssh_keys": r.SSHKey,
			} {
				if got := strings.Join(strs(t, tf[k]), ","); got != want {
					t.Errorf("cluster.tf %s = %s, want %s", k, got, want)
				}
			}
			for k, want := range map[string]string{
				"cluster_name": r.Plan.ClusterName, "k8s_domain_name": r.Domain, "matchbox_http_endpoint": r.MatchboxURL,
				"cached_install": "true", "network_ip_autodetection_method": "can-reach=" + r.Plan.Management.IP,
				"os_channel": r.OSChannel, "os_version": r.OSVersion,
			} {
				if got := tf[k].AsString(); got != want {
					t.Errorf("cluster.tf %s = %q, want %q", k, got, want)
				}
			}
			if r.InstallDisk != "" {
				if tf["install_disk"].AsString() != r.InstallDisk || tf["install_to_smallest_disk"].True() {
					t.Errorf("install disk %s: cluster.tf has %#v, smallest %#v", r.InstallDisk, tf["install_disk"], tf["install_to_smallest_disk"])
				}
			} else if !tf["install_to_smallest_disk"].True() {
				t.Error("no install disk given, but not install_to_smallest_disk")
			}
			// The matchbox provider gets the gRPC endpoint and the client
			// certificate in the rack's state folder.
			m := r.Matchbox
			if !strings.HasPrefix(m.Endpoint, r.Plan.Management.IP+":") {
				t.Errorf("matchbox endpoint %s is not on the management node %s", m.Endpoint, r.Plan.Management.IP)
			}
			for _, want := range []string{`endpoint    = "` + m.Endpoint + `"`, `file("` + m.ClientCertPath + `")`, `file("` + m.ClientKeyPath + `")`, `file("` + m.CAPath + `")`} {
				if !strings.Contains(g.tf, want) {
					t.Errorf("cluster.tf's matchbox provider lacks %s", want)
				}
			}
			checkLabels(t, g, r)
			checkSnippets(t, g, r)
			checkComponents(t, g, r)
		})
	}
}

// checkLabels: every node has its type; exactly the storage nodes carry
// the provider; workers keep Lokomotive's own worker label.
func checkLabels(t *testing.T, g *loaded, r *rack) {
	t.Helper()
	labels := g.cluster["node_specific_labels"]
	storage := map[string]bool{}
	for _, n := range r.storageNodes() {
		storage[n.Hostname] = true
	}
	for _, n := range r.Plan.Nodes {
		l := labels.GetAttr(n.Hostname)
		if got := l.GetAttr("metadata.node-type").AsString(); got != n.Type {
			t.Errorf("%s: node type label %q, want %q", n.Hostname, got, n.Type)
		}
		has := hasAttr(l, "storage.lokomotive.io")
		if has != storage[n.Hostname] {
			t.Errorf("%s: storage label %v, want %v (storage node %v, provider %q)", n.Hostname, has, storage[n.Hostname], n.Storage, r.Components.Storage)
		} else if has && l.GetAttr("storage.lokomotive.io").AsString() != r.Components.Storage {
			t.Errorf("%s: storage label %#v", n.Hostname, l.GetAttr("storage.lokomotive.io"))
		}
	}
	if !hasAttr(g.cluster["labels"], "node.kubernetes.io/node") {
		t.Errorf("workers lose node.kubernetes.io/node: labels = %#v", g.cluster["labels"])
	}
}

// checkSnippets: every node's snippets reach cluster.tf as Container Linux
// Configs that the transpiler of Lokomotive's ct Terraform provider
// accepts; static public addresses reach the installed system and the
// installer, DHCP nodes get none.
func checkSnippets(t *testing.T, g *loaded, r *rack) {
	t.Helper()
	snippets, installer := g.cluster["clc_snippets"], g.cluster["installer_clc_snippets"]
	nstatic := 0
	for _, n := range r.Plan.Nodes {
		if !hasAttr(snippets, n.Hostname) {
			t.Errorf("%s: no clc_snippets", n.Hostname)
			continue
		}
		list := strs(t, snippets.GetAttr(n.Hostname))
		ign := transpile(t, n.Hostname, list)
		for _, want := range []string{"Address=" + n.IP + "/", "MACAddress=" + n.PrimaryMAC, r.Plan.ClusterName + "." + r.Domain} {
			if !strings.Contains(ign, want) {
				t.Errorf("%s: the transpiled snippets lack %q:\n%s", n.Hostname, want, ign)
			}
		}
		ip, ok := r.PublicIPs[n.SecondaryMAC]
		isStatic := ok && !ip.DHCP
		hasInstaller := hasAttr(installer, n.Hostname) // absent from cluster.tf when no node has one
		switch {
		case isStatic && (!strings.Contains(ign, "Address="+ip.Address) || !strings.Contains(ign, "Gateway="+ip.Gateway)):
			t.Errorf("%s: static public address %s missing from its snippets:\n%s", n.Hostname, ip.Address, ign)
		case isStatic && !hasInstaller:
			t.Errorf("%s: the installer does not get the static public address", n.Hostname)
		case !isStatic && (hasInstaller || len(list) != 1):
			t.Errorf("%s: a DHCP node got public-network snippets", n.Hostname)
		case isStatic:
			nstatic++
			if inst := transpile(t, n.Hostname+" (installer)", strs(t, installer.GetAttr(n.Hostname))); !strings.Contains(inst, "Address="+ip.Address) {
				t.Errorf("%s: installer snippet lacks %s:\n%s", n.Hostname, ip.Address, inst)
			}
		}
	}
	if len(r.PublicIPs) > 0 && nstatic == 0 {
		t.Error("no node got its static public address")
	}
}

// checkComponents loads every component block through its Lokomotive
// package (decoding and validation) and renders its manifests.
func checkComponents(t *testing.T, g *loaded, r *rack) {
	t.Helper()
	var got []string
	for _, c := range g.cfg.RootConfig.Components {
		got = append(got, c.Name)
		comp, ok := offered()[c.Name]
		if !ok {
			t.Errorf("component %q: not one Racker offers", c.Name)
			continue
		}
		if diags := comp.LoadConfig(g.cfg.LoadComponentConfigBody(c.Name), g.cfg.EvalContext); diags.HasErrors() {
			t.Errorf("Lokomotive's %s component refuses its configuration:\n%s", c.Name, diagText(diags))
			continue
		}
		files, err := comp.RenderManifests()
		if err != nil || len(files) == 0 {
			t.Errorf("component %s: rendering its manifests: %v (%d files)", c.Name, err, len(files))
		}
		rendered := strings.Join(mapValues(files), "\n")
		switch c.Name {
		case "velero":
			st, err := os.Stat(r.Credentials)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("velero's credentials file %s: %v, want mode 0600", r.Credentials, err)
			}
			if b := r.Components.Backup; !containsEncoded(rendered, b.AccessKeyID) || !strings.Contains(rendered, b.Bucket) {
				t.Errorf("velero's manifests lack the credentials file's key or the bucket")
			}
		case "openebs-storage-class":
			want := min(len(r.storageNodes()), 3)
			if !strings.Contains(rendered, "replicaCount: \""+string(rune('0'+want))+"\"") && !strings.Contains(rendered, "value: \""+string(rune('0'+want))+"\"") {
				t.Errorf("openebs replica count: want %d (the storage nodes, at most 3):\n%s", want, rendered)
			}
		}
	}
	want := r.wantComponents()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("components %v, want %v", got, want)
	}
}

// loaded is what Lokomotive made of a rack's files.
type loaded struct {
	cfg     *config.Config
	tf      string               // the cluster.tf lokoctl renders
	cluster map[string]cty.Value // its module block's values
}

// load reads a rack's configuration as `lokoctl cluster apply` does before
// it runs Terraform: config.LoadConfig on the folder (every *.lokocfg) and
// lokocfg.vars, the bare-metal platform's LoadConfig (decoding and
// validation), Meta, and Initialize, which renders cluster.tf. Any
// diagnostic fails the test and is quoted.
func load(t *testing.T, r *rack) *loaded {
	t.Helper()
	lc, diags := config.LoadConfig(r.Dir, r.Vars)
	if diags.HasErrors() {
		t.Fatalf("Lokomotive's config.LoadConfig refuses the files: %v", diags)
	}
	if lc.RootConfig.Cluster == nil || lc.RootConfig.Cluster.Name != baremetal.Name {
		t.Fatalf("no cluster %q block", baremetal.Name)
	}
	platform := baremetal.NewConfig()
	if diags := platform.LoadConfig(&lc.RootConfig.Cluster.Config, lc.EvalContext); diags.HasErrors() {
		t.Fatalf("Lokomotive's bare-metal platform refuses the configuration:\n%s", diagText(diags))
	}
	meta := platform.Meta()
	if meta.ExpectedNodes != len(r.Plan.Nodes) {
		t.Errorf("Lokomotive expects %d nodes, the plan has %d", meta.ExpectedNodes, len(r.Plan.Nodes))
	}
	if !filepath.IsAbs(meta.AssetDir) || !strings.HasPrefix(meta.AssetDir, r.Dir) {
		t.Errorf("asset_dir %q: want a folder under %s", meta.AssetDir, r.Dir)
	}
	// Initialize renders cluster.tf, the Terraform lokoctl runs; Lokomotive
	// pastes values into it unquoted, so it must still parse and hold them.
	tfDir := filepath.Join(meta.AssetDir, "terraform")
	if err := os.MkdirAll(tfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := platform.Initialize(nil); err != nil {
		t.Fatalf("Lokomotive's Initialize: %v", err)
	}
	tfPath := filepath.Join(tfDir, "cluster.tf")
	tf, err := os.ReadFile(tfPath)
	if err != nil {
		t.Fatal(err)
	}
	return &loaded{cfg: lc, tf: string(tf), cluster: moduleBlock(t, tfPath, r.Plan.ClusterName)}
}

// moduleBlock parses cluster.tf with HCL and returns the literal values of
// the cluster's module block.
func moduleBlock(t *testing.T, path, name string) map[string]cty.Value {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		b, _ := os.ReadFile(path)
		t.Fatalf("the cluster.tf Lokomotive renders from the configuration does not parse: %v\n%s", diags, b)
	}
	content, _, diags := f.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "module", LabelNames: []string{"name"}}}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range content.Blocks {
		if b.Labels[0] != "bare-metal-"+name {
			continue
		}
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		out := map[string]cty.Value{}
		for k, a := range attrs {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("cluster.tf %s: %v", k, diags)
			}
			out[k] = v
		}
		return out
	}
	t.Fatalf("cluster.tf has no module \"bare-metal-%s\"", name)
	return nil
}

func macs(ns []node) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.PrimaryMAC)
	}
	return strings.Join(out, ",")
}

func names(ns []node, suffix string) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Hostname+suffix)
	}
	return strings.Join(out, ",")
}

// hasAttr says whether v is an object with the attribute name.
func hasAttr(v cty.Value, name string) bool {
	return v != cty.NilVal && !v.IsNull() && v.Type().IsObjectType() && v.Type().HasAttribute(name)
}

func strs(t *testing.T, v cty.Value) []string {
	t.Helper()
	if v.IsNull() || !v.CanIterateElements() {
		t.Fatalf("want a list of strings, got %#v", v)
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

func diagText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString("  " + d.Error() + "\n")
	}
	return b.String()
}
