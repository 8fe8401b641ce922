package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
	"github.com/racker/racker/provisioner/plan"
)

// lokocfg is Lokomotive's bare-metal platform block. The values live in
// lokocfg.vars, so an operator reads data, not structure. Every field the
// v0.9.0 platform requires is here; the optional ones are those a Racker
// rack needs (two NICs, serial consoles, Racker's asset cache, snippets).
const lokocfg = `# Written by racker bootstrap --provision lokomotive; values are in lokocfg.vars.
# Racker rewrites this file: put your own settings into another *.lokocfg file here.
variable "cluster_name" {}
variable "asset_dir" {}
variable "k8s_domain_name" {}
variable "ssh_public_keys" {}
variable "matchbox_endpoint" {}
variable "matchbox_http_endpoint" {}
variable "matchbox_ca_path" {}
variable "matchbox_client_cert_path" {}
variable "matchbox_client_key_path" {}
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
variable "kernel_console" {}
variable "network_ip_autodetection_method" {}
variable "pxe_commands" {}
variable "install_pre_reboot_cmds" {}
variable "labels" {}
variable "node_specific_labels" {}
variable "clc_snippets" {}
variable "installer_clc_snippets" {}

cluster "bare-metal" {
  asset_dir                       = var.asset_dir
  cluster_name                    = var.cluster_name
  k8s_domain_name                 = var.k8s_domain_name
  ssh_pubkeys                     = var.ssh_public_keys
  matchbox_endpoint               = var.matchbox_endpoint
  matchbox_http_endpoint          = var.matchbox_http_endpoint
  matchbox_ca_path                = var.matchbox_ca_path
  matchbox_client_cert_path       = var.matchbox_client_cert_path
  matchbox_client_key_path        = var.matchbox_client_key_path
  # Racker serves the OS images under /assets, as matchbox's cache.
  cached_install                  = "true"
  os_channel                      = var.os_channel
  os_version                      = var.os_version
  controller_macs                 = var.controller_macs
  controller_names                = var.controller_names
  controller_domains              = var.controller_domains
  worker_macs                     = var.worker_macs
  worker_names                    = var.worker_names
  worker_domains                  = var.worker_domains
  install_disk                    = var.install_disk
  install_to_smallest_disk        = var.install_to_smallest_disk
  wipe_additional_disks           = true
  kernel_console                  = var.kernel_console
  network_ip_autodetection_method = var.network_ip_autodetection_method
  pxe_commands                    = var.pxe_commands
  install_pre_reboot_cmds         = var.install_pre_reboot_cmds
  labels                          = var.labels
  node_specific_labels            = var.node_specific_labels
  clc_snippets                    = { for name, paths in var.clc_snippets : name => [for p in paths : file(p)] }
  installer_clc_snippets          = { for name, paths in var.installer_clc_snippets : name => [for p in paths : file(p)] }
}

component "flatcar-linux-update-operator" {}
`

// pxeCommands is what Lokomotive's Terraform runs to PXE-boot a node: Racker
// drives every node's BMC itself while lokoctl runs, so it only says so. It
// must not contain "${": Terraform would read that as its own template.
const pxeCommands = `echo "racker bootstrap PXE-boots $mac ($domain) through its BMC"`

// installPreRebootCmds is run by the installer before its reboot; Racker
// sets the boot device through the BMC, so there is nothing to do.
const installPreRebootCmds = "true"

// WriteLokomotive writes the Lokomotive configuration for the plan into
// dir: baremetal.lokocfg and lokocfg.vars, the component files the input
// asks for (and removes those it no longer does), the per-node snippets
// under cl/, and velero's credentials (mode 0600). It returns the paths of
// the two main files. Every value is checked first, since Lokomotive pastes
// several of them unquoted into Terraform.
func WriteLokomotive(dir string, in Input) (cfgPath, varsPath string, err error) {
	c, err := newLokoConfig(dir, in)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, SnippetDir), 0o755); err != nil {
		return "", "", fmt.Errorf("writing the Lokomotive configuration: %w", err)
	}
	snippets, installer, err := c.writeSnippets()
	if err != nil {
		return "", "", err
	}
	componentVars, err := c.writeComponents()
	if err != nil {
		return "", "", err
	}
	cfgPath, varsPath = filepath.Join(dir, LokocfgFile), filepath.Join(dir, LokocfgVarFile)
	if err := atomicfile.Write(cfgPath, []byte(lokocfg), 0o644); err != nil {
		return "", "", err
	}
	vars := c.vars(snippets, installer) + componentVars
	if err := atomicfile.Write(varsPath, []byte(vars), 0o644); err != nil {
		return "", "", err
	}
	return cfgPath, varsPath, nil
}

// lokoConfig is the checked input of one WriteLokomotive.
type lokoConfig struct {
	dir         string
	in          Input
	domain      string
	matchbox    Matchbox
	console     []string
	controllers []plan.Node
	workers     []plan.Node
	storage     string // provider, "" for none
	channel     string // os_channel
	version     string // os_version
}

func newLokoConfig(dir string, in Input) (*lokoConfig, error) {
	if in.Plan == nil {
		return nil, errors.New("writing the Lokomotive configuration: no plan")
	}
	c := &lokoConfig{dir: dir, in: in, domain: in.Domain, matchbox: in.Matchbox, console: in.KernelConsole,
		controllers: in.Plan.Controllers(), workers: in.Plan.Workers()}
	if c.domain == "" {
		c.domain = DefaultDomain
	}
	if c.matchbox == (Matchbox{}) {
		c.matchbox = DefaultMatchbox(in.StateDir, in.Plan)
	}
	if c.console == nil {
		c.console = DefaultKernelConsole
	}
	c.channel, c.version = in.OSChannel, in.OSVersion
	if c.channel == "" {
		c.channel = "stable"
	}
	if c.version == "" {
		c.version = "current"
	}
	switch s := in.Components.Storage; s {
	case "", StorageNone:
	case StorageRook, StorageOpenEBS:
		c.storage = s
	default:
		return nil, fmt.Errorf("storage provider %q: want none, rook or openebs", s)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("the Lokomotive configuration: %w", err)
	}
	return c, nil
}

// domainOf is a node's FQDN (controller_domains, worker_domains).
func (c *lokoConfig) domainOf(n plan.Node) string { return n.Hostname + "." + c.domain }

// storageNodes are the plan's storage nodes, when a provider is chosen.
func (c *lokoConfig) storageNodes() []plan.Node {
	if c.storage == "" {
		return nil
	}
	var out []plan.Node
	for _, n := range c.workers {
		if n.Storage {
			out = append(out, n)
		}
	}
	return out
}

// vars is lokocfg.vars: the plan's values for baremetal.lokocfg.
func (c *lokoConfig) vars(snippets, installer map[string][]string) string {
	var w hclWriter
	p := c.in.Plan
	w.attr("cluster_name", hclString(p.ClusterName))
	w.attr("asset_dir", hclString(filepath.Join(c.dir, AssetDir)))
	w.attr("k8s_domain_name", hclString(c.domain))
	w.attr("ssh_public_keys", hclList([]string{strings.TrimSpace(c.in.SSHPublicKey)}))
	w.attr("matchbox_endpoint", hclString(c.matchbox.Endpoint))
	w.attr("matchbox_http_endpoint", hclString(c.in.MatchboxURL))
	w.attr("matchbox_ca_path", hclString(c.matchbox.CAPath))
	w.attr("matchbox_client_cert_path", hclString(c.matchbox.ClientCertPath))
	w.attr("matchbox_client_key_path", hclString(c.matchbox.ClientKeyPath))
	w.attr("os_channel", hclString(c.channel))
	w.attr("os_version", hclString(c.version))
	for _, g := range []struct {
		prefix string
		nodes  []plan.Node
	}{{"controller", c.controllers}, {"worker", c.workers}} {
		var macs, names, domains []string
		for _, n := range g.nodes {
			macs = append(macs, n.PrimaryMAC)
			names = append(names, n.Hostname)
			domains = append(domains, c.domainOf(n))
		}
		w.attr(g.prefix+"_macs", hclList(macs))
		w.attr(g.prefix+"_names", hclList(names))
		w.attr(g.prefix+"_domains", hclList(domains))
	}
	w.attr("install_disk", hclString(c.in.InstallDisk))
	w.attr("install_to_smallest_disk", fmt.Sprint(c.in.InstallDisk == ""))
	w.attr("kernel_console", hclList(c.console))
	// Calico picks the address that reaches the management node: the
	// internal NIC, not the public one.
	w.attr("network_ip_autodetection_method", hclString("can-reach="+p.Management.IP.String()))
	w.attr("pxe_commands", hclString(pxeCommands))
	w.attr("install_pre_reboot_cmds", hclString(installPreRebootCmds))
	// Lokomotive gives workers "node.kubernetes.io/node" only when they
	// have no other label; node_specific_labels would drop it, so keep it.
	w.attr("labels", hclMap(map[string]string{LabelWorker: ""}, "  "))
	labels := map[string]string{}
	storage := map[string]bool{}
	for _, n := range c.storageNodes() {
		storage[n.PrimaryMAC] = true
	}
	var nested strings.Builder
	nested.WriteString("{\n")
	for _, n := range sortedByName(p.Nodes) {
		clear(labels)
		if v := labelValue(n.Type); v != "" {
			labels[LabelNodeType] = v
		}
		if storage[n.PrimaryMAC] {
			labels[LabelStorage] = c.storage
		}
		fmt.Fprintf(&nested, "  %s = %s\n", hclString(n.Hostname), hclMap(labels, "    "))
	}
	nested.WriteString("}")
	w.attr("node_specific_labels", nested.String())
	w.attr("clc_snippets", hclListMap(snippets))
	w.attr("installer_clc_snippets", hclListMap(installer))
	return w.String()
}

func sortedByName(ns []plan.Node) []plan.Node {
	out := append([]plan.Node(nil), ns...)
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out
}

// hclWriter writes "name = value" lines, aligned.
type hclWriter struct{ b strings.Builder }

func (w *hclWriter) attr(name, value string) { fmt.Fprintf(&w.b, "%-31s = %s\n", name, value) }
func (w *hclWriter) String() string          { return w.b.String() }

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

// hclMap is an object of strings, keys sorted, entries indented by indent.
func hclMap(m map[string]string, indent string) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s%s = %s\n", indent, hclString(k), hclString(m[k]))
	}
	b.WriteString(indent[:len(indent)-2] + "}")
	return b.String()
}

// hclListMap is an object of string lists, keys sorted.
func hclListMap(m map[string][]string) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s = %s\n", hclString(k), hclList(m[k]))
	}
	b.WriteString("}")
	return b.String()
}
