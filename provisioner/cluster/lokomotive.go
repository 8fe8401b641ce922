package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
	"github.com/racker/racker/provisioner/plan"
)

// Files of the lokomotive profile, in STATE/lokomotive.
const (
	LokomotiveDir  = "lokomotive"
	LokocfgFile    = "baremetal.lokocfg"
	LokocfgVarFile = "lokocfg.vars"
)

// Labels every node gets in the Kubernetes cluster.
const (
	LabelNodeType = "racker.io/node-type"
	LabelStorage  = "racker.io/storage"
)

// lokocfg is Lokomotive's bare-metal platform block. The values live in
// lokocfg.vars, so an operator edits data, not structure.
const lokocfg = `# Written by racker bootstrap --provision lokomotive. Values are in lokocfg.vars.
variable "cluster_name" {}
variable "asset_dir" {}
variable "k8s_domain_name" {}
variable "ssh_public_keys" {}
variable "matchbox_http_endpoint" {}
variable "os_channel" {}
variable "os_version" {}
variable "controller_macs" {}
variable "controller_names" {}
variable "controller_domains" {}
variable "worker_macs" {}
variable "worker_names" {}
variable "worker_domains" {}
variable "install_disk" {}
variable "install_to_smallest_disk" {}
variable "node_specific_labels" {}

cluster "bare-metal" {
  asset_dir                = var.asset_dir
  cluster_name             = var.cluster_name
  k8s_domain_name          = var.k8s_domain_name
  ssh_pubkeys              = var.ssh_public_keys
  cached_install           = "true"
  matchbox_http_endpoint   = var.matchbox_http_endpoint
  os_channel               = var.os_channel
  os_version               = var.os_version
  controller_macs          = var.controller_macs
  controller_names         = var.controller_names
  controller_domains       = var.controller_domains
  worker_macs              = var.worker_macs
  worker_names             = var.worker_names
  worker_domains           = var.worker_domains
  install_disk             = var.install_disk
  install_to_smallest_disk = var.install_to_smallest_disk
  node_specific_labels     = var.node_specific_labels
}
`

// WriteLokomotive writes baremetal.lokocfg and lokocfg.vars for the plan
// into dir and returns their paths.
func WriteLokomotive(dir string, in Input) (cfgPath, varsPath string, err error) {
	p := in.Plan
	domain := in.Domain
	if domain == "" {
		domain = p.ClusterName + ".local"
	}
	var b strings.Builder
	w := func(k string, v string) { fmt.Fprintf(&b, "%-24s = %s\n", k, v) }
	w("cluster_name", hclString(p.ClusterName))
	w("asset_dir", hclString(filepath.Join(dir, "assets")))
	w("k8s_domain_name", hclString(domain))
	w("ssh_public_keys", hclList([]string{strings.TrimSpace(in.SSHPublicKey)}))
	w("matchbox_http_endpoint", hclString(in.MatchboxURL))
	w("os_channel", hclString("stable"))
	w("os_version", hclString("current"))
	for _, g := range []struct {
		prefix string
		nodes  []plan.Node
	}{{"controller", p.Controllers()}, {"worker", p.Workers()}} {
		var macs, names, domains []string
		for _, n := range g.nodes {
			macs = append(macs, n.PrimaryMAC)
			names = append(names, n.Hostname)
			domains = append(domains, n.Hostname+"."+domain)
		}
		w(g.prefix+"_macs", hclList(macs))
		w(g.prefix+"_names", hclList(names))
		w(g.prefix+"_domains", hclList(domains))
	}
	w("install_disk", hclString(in.InstallDisk))
	w("install_to_smallest_disk", hclString(fmt.Sprint(in.InstallDisk == "")))
	b.WriteString("node_specific_labels = {\n")
	nodes := append([]plan.Node(nil), p.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Hostname < nodes[j].Hostname })
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s = {\n    %s = %s\n    %s = %s\n  }\n", hclString(n.Hostname),
			hclString(LabelNodeType), hclString(n.Type), hclString(LabelStorage), hclString(fmt.Sprint(n.Storage)))
	}
	b.WriteString("}\n")

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("writing the Lokomotive configuration: %w", err)
	}
	cfgPath, varsPath = filepath.Join(dir, LokocfgFile), filepath.Join(dir, LokocfgVarFile)
	if err := atomicfile.Write(cfgPath, []byte(lokocfg), 0o644); err != nil {
		return "", "", err
	}
	if err := atomicfile.Write(varsPath, []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	return cfgPath, varsPath, nil
}

// lokoctlArgs is the command that applies the configuration, run in its folder.
var lokoctlArgs = []string{"cluster", "apply", "--confirm", "--verbose"}

func applyLokomotive(ctx context.Context, in Input) error {
	dir := filepath.Join(in.StateDir, LokomotiveDir)
	cfgPath, varsPath, err := WriteLokomotive(dir, in)
	if err != nil {
		return err
	}
	in.Logger.Info("wrote the Lokomotive configuration", "config", cfgPath, "vars", varsPath)
	look := in.LookPath
	if look == nil {
		look = exec.LookPath
	}
	bin, err := look("lokoctl")
	if err != nil {
		fmt.Fprintf(in.Stdout, "lokoctl is not on PATH; to create the cluster, run:\n  cd %s && lokoctl %s\n", dir, strings.Join(lokoctlArgs, " "))
		return ErrNotApplied
	}
	run := in.Run
	if run == nil {
		run = func(ctx context.Context, dir, bin string, args ...string) error {
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Dir, cmd.Stdout, cmd.Stderr = dir, in.Stdout, in.Stdout
			return cmd.Run()
		}
	}
	in.Logger.Info("running lokoctl", "dir", dir, "args", strings.Join(lokoctlArgs, " "))
	if err := run(ctx, dir, bin, lokoctlArgs...); err != nil {
		return fmt.Errorf("lokoctl %s in %s: %w", strings.Join(lokoctlArgs, " "), dir, err)
	}
	return nil
}

// hclString quotes s as an HCL string literal; "${" and "%{" are escaped
// so no value is ever read as a template.
func hclString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "${", "$${", "%{", "%%{")
	return `"` + r.Replace(s) + `"`
}

func hclList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
