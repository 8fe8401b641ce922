package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lokomotive's own loader and platform check these files in the
// conformance module (provisioner/cluster/lokomotive/conformance, run by
// make test); these tests cover Racker's side: which files, which modes,
// what is refused, and that a changed choice leaves nothing stale.

func lokoInput(t *testing.T) Input {
	t.Helper()
	return Input{Plan: testPlan(t), StateDir: t.TempDir(), SSHPublicKey: "ssh-ed25519 AAAA racker\n",
		MatchboxURL: "http://172.24.213.1:8080"}
}

func haveTools(name string) (string, error) { return "/opt/bin/" + name, nil }

func TestLokomotiveFilesFollowTheChoices(t *testing.T) {
	in := lokoInput(t)
	dir := filepath.Join(in.StateDir, LokomotiveDir)
	in.OSVersion = "4152.2.3"
	in.Components = Components{WebUI: true, Storage: StorageRook, Backup: &Backup{Bucket: "racker-backups", Region: "eu-central-1",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "c2VjcmV0/key+1="}}
	ips, err := ParsePublicIPs("ips", strings.NewReader("[00:11:22:33:44:50]\nip_addr = 203.0.113.20/24\ngateway = 203.0.113.1\ndns = 1.1.1.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	in.PublicIPs = ips
	if _, _, err := WriteLokomotive(dir, in); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	vars := read(LokocfgVarFile)
	for _, want := range []string{
		`matchbox_endpoint               = "172.24.213.1:8081"`,
		`matchbox_ca_path                = "` + filepath.Join(in.StateDir, MatchboxClientDir, "ca.crt") + `"`,
		`k8s_domain_name                 = "k8s.localdomain"`,
		`controller_domains              = ["lab-controller-0.k8s.localdomain"]`,
		`network_ip_autodetection_method = "can-reach=172.24.213.1"`,
		`"storage.lokomotive.io" = "rook"`,
		`"node.kubernetes.io/node" = ""`,
		`rook_monitor_count              = 1`,
		`os_version                      = "4152.2.3"`,
		`os_channel                      = "stable"`,
		`backup_s3_bucket_name           = "racker-backups"`,
	} {
		if !strings.Contains(vars, want) {
			t.Errorf("lokocfg.vars lacks %s:\n%s", want, vars)
		}
	}
	if strings.Contains(vars, "AKIAEXAMPLE") || strings.Contains(read(VeleroFile), "AKIAEXAMPLE") {
		t.Error("the AWS key is in a .lokocfg or .vars file; it belongs only in the credentials file")
	}
	st, err := os.Stat(filepath.Join(dir, BackupCredentialsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v; want 0600", err, st)
	}
	if c := read(BackupCredentialsFile); c != "[default]\naws_access_key_id=AKIAEXAMPLE\naws_secret_access_key=c2VjcmV0/key+1=\n" {
		t.Errorf("credentials file %q", c)
	}
	w := in.Plan.Workers()[0] // the purple storage node with the static public address
	if pub := read(filepath.Join(SnippetDir, w.Hostname+"-public.yaml")); !strings.Contains(pub, "Address=203.0.113.20/24") || !strings.Contains(pub, "MACAddress=00:11:22:33:44:50") {
		t.Errorf("public snippet:\n%s", pub)
	}
	if node := read(filepath.Join(SnippetDir, w.Hostname+".yaml")); !strings.Contains(node, "Address="+w.IP.String()+"/24") ||
		!strings.Contains(node, "lab-etcd0.k8s.localdomain lab.k8s.localdomain") {
		t.Errorf("node snippet:\n%s", node)
	}

	// Choices turned off: their files go, an operator's own file stays.
	mine := filepath.Join(dir, "mine.lokocfg")
	os.WriteFile(mine, []byte("# operator\n"), 0o644)
	in.Components, in.PublicIPs = Components{Storage: StorageOpenEBS}, nil
	if _, _, err := WriteLokomotive(dir, in); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{WebUIFile, RookFile, VeleroFile, BackupCredentialsFile, filepath.Join(SnippetDir, w.Hostname+"-public.yaml")} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after its choice was turned off (%v)", gone, err)
		}
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the operator's own .lokocfg was removed: %v", err)
	}
	if v := read(LokocfgVarFile); !strings.Contains(v, `openebs_replica_count           = 1`) || !strings.Contains(v, `installer_clc_snippets          = {}`) {
		t.Errorf("openebs vars:\n%s", v)
	}
}

// Lokomotive pastes several values unquoted into Terraform: whatever could
// break out is refused with an error naming it, before any file is written.
func TestLokomotiveRefusesUnsafeValues(t *testing.T) {
	cases := map[string]struct {
		edit func(*Input)
		want string
	}{
		"cluster name":   {func(in *Input) { in.Plan.ClusterName = `lab"${x}` }, `--cluster-name "lab\"${x}"`},
		"domain":         {func(in *Input) { in.Domain = "Example.COM" }, `--domain "Example.COM"`},
		"install disk":   {func(in *Input) { in.InstallDisk = `/dev/sda" ` }, "install disk"},
		"ssh key":        {func(in *Input) { in.SSHPublicKey = "ssh-ed25519 AAAA ${file(\"/etc/shadow\")}" }, "SSH public key"},
		"no ssh key":     {func(in *Input) { in.SSHPublicKey = "" }, "SSH public key"},
		"console":        {func(in *Input) { in.KernelConsole = []string{"console=ttyS0 rd.break"} }, "kernel console"},
		"matchbox URL":   {func(in *Input) { in.MatchboxURL = `http://x"` }, "matchbox HTTP endpoint"},
		"os version":     {func(in *Input) { in.OSVersion = "4152.2.3; rm -rf /" }, `Flatcar version "4152.2.3; rm -rf /"`},
		"testos version": {func(in *Input) { in.OSVersion = "testos-ab12\"" }, `Flatcar version "testos-ab12\""`},
		"os channel":     {func(in *Input) { in.OSChannel = "nightly" }, `Flatcar channel "nightly"`},
		"storage":        {func(in *Input) { in.Components.Storage = "ceph" }, `storage provider "ceph"`},
		"backup keys":    {func(in *Input) { in.Components.Backup = &Backup{Bucket: "b", Region: "r"} }, "AWS access key"},
		"public ip":      {func(in *Input) { in.PublicIPs = PublicIPs{"00:11:22:33:44:99": {DHCP: true}} }, "[00:11:22:33:44:99] is no node's secondary MAC"},
		"storage, none": {func(in *Input) {
			in.Components.Storage = StorageRook
			for i := range in.Plan.Nodes {
				in.Plan.Nodes[i].Storage = false
			}
		}, "the plan has no storage nodes"},
	}
	for name, c := range cases {
		in := lokoInput(t)
		c.edit(&in)
		dir := filepath.Join(in.StateDir, LokomotiveDir)
		_, _, err := WriteLokomotive(dir, in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: files written before the check", name)
		}
	}
	if got := labelValue("_gpu.node_"); got != "gpu.node" {
		t.Errorf("labelValue: %q", got)
	}
}

func TestLokoctlRunsWhenInstalled(t *testing.T) {
	var ranDir, ranBin string
	var ranArgs []string
	in := lokoInput(t)
	in.LookPath = haveTools
	in.Run = func(ctx context.Context, dir, bin string, args ...string) error {
		ranDir, ranBin, ranArgs = dir, bin, args
		if _, err := os.Stat(filepath.Join(dir, LokocfgFile)); err != nil {
			t.Errorf("lokoctl ran before the configuration was written: %v", err)
		}
		return errors.New("exit status 1")
	}
	err := Apply(context.Background(), Lokomotive, in)
	if err == nil || !strings.Contains(err.Error(), "lokoctl cluster apply") {
		t.Errorf("a failing lokoctl is an error naming the command; got %v", err)
	}
	if filepath.Base(ranDir) != LokomotiveDir || ranBin != "/opt/bin/lokoctl" || strings.Join(ranArgs, " ") != "cluster apply --confirm --verbose" {
		t.Errorf("ran %s in %s with %v", ranBin, ranDir, ranArgs)
	}
}

// Without lokoctl (or the terraform it runs) the profile cannot be applied:
// an error that names --provision flatcar, and nothing written.
func TestLokomotiveWithoutLokoctl(t *testing.T) {
	for _, missing := range []string{"lokoctl", "terraform"} {
		in := lokoInput(t)
		in.LookPath = func(name string) (string, error) {
			if name == missing {
				return "", errors.New("not found")
			}
			return haveTools(name)
		}
		err := Apply(context.Background(), Lokomotive, in)
		if !errors.Is(err, ErrNoLokoctl) || !strings.Contains(err.Error(), "--provision flatcar") || !strings.Contains(err.Error(), "WITH=lokoctl,terraform") {
			t.Errorf("without %s: %v", missing, err)
		}
		if _, err := os.Stat(filepath.Join(in.StateDir, LokomotiveDir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("without %s: configuration written anyway", missing)
		}
	}
}

// LookTool finds a tool next to the running executable before PATH: the
// release's own bin/ wins over whatever else is installed.
func TestLookToolPrefersTheReleaseBin(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(self)
	t.Setenv("PATH", t.TempDir())
	if _, err := LookTool("racker-no-such-tool"); err == nil {
		t.Error("found a tool that does not exist")
	}
	if p, err := LookTool(filepath.Base(real)); err != nil || p != real {
		t.Errorf("LookTool(%s) = %q, %v; want %s", filepath.Base(real), p, err, real)
	}
}
