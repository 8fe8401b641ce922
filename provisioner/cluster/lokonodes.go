package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
	"github.com/racker/racker/provisioner/plan"
)

// Kubernetes node labels of a Lokomotive rack, upstream Racker's keys: the
// node type from nodes.csv, and the storage provider on storage nodes
// (what the rook and openebs components select).
const (
	LabelNodeType = "metadata.node-type"
	LabelStorage  = "storage.lokomotive.io"
	// LabelWorker is Lokomotive's own worker label, kept on every worker.
	LabelWorker = "node.kubernetes.io/node"
)

// Lokomotive v0.9.0 pastes names, paths and endpoints into Terraform
// between quotes without escaping them, and uses the cluster name in a
// module name: what it gets must be plain.
var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	devicePath = regexp.MustCompile(`^/dev/[A-Za-z0-9/_.:-]+$`)
	kernelArg  = regexp.MustCompile(`^[A-Za-z0-9_.,:=/-]+$`)
	hostPort   = regexp.MustCompile(`^[A-Za-z0-9.-]+:[0-9]{1,5}$`)
	plainPath  = regexp.MustCompile(`^/[A-Za-z0-9/_.@+-]+$`)
	// A Flatcar version, current, or a test OS release's (the simulator's
	// stand-in for Flatcar, served under /assets/flatcar/ too).
	osVersion   = regexp.MustCompile(`^(current|[0-9]+(\.[0-9]+){2}|testos-[0-9a-z]+)$`)
	plainURL    = regexp.MustCompile(`^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9/_.-]*)?$`)
	labelBad    = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
	awsKeyValue = regexp.MustCompile(`^[A-Za-z0-9/+=_.-]+$`)
)

// check refuses values Lokomotive or Kubernetes would choke on, each error
// naming the value and where it came from.
func (c *lokoConfig) check() error {
	p := c.in.Plan
	if !dnsLabel.MatchString(p.ClusterName) {
		return fmt.Errorf("--cluster-name %q: Lokomotive needs a DNS label (lower-case letters, digits, inner dashes, at most 63)", p.ClusterName)
	}
	if len(c.controllers) == 0 {
		return fmt.Errorf("the plan has no controller")
	}
	for _, l := range strings.Split(c.domain, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("--domain %q: want a DNS name of lower-case labels, e.g. %s", c.domain, DefaultDomain)
		}
	}
	for _, n := range p.Nodes {
		if !dnsLabel.MatchString(n.Hostname) {
			return fmt.Errorf("node %s: hostname %q is not a DNS label", n.PrimaryMAC, n.Hostname)
		}
	}
	key := strings.TrimSpace(c.in.SSHPublicKey)
	if key == "" || strings.ContainsAny(key, "\n\"\\") || strings.Contains(key, "${") || strings.Contains(key, "%{") {
		return fmt.Errorf("the cluster's SSH public key: want one authorized_keys line, got %q", key)
	}
	if c.in.InstallDisk != "" && !devicePath.MatchString(c.in.InstallDisk) {
		return fmt.Errorf("install disk %q: want a device path such as /dev/sda", c.in.InstallDisk)
	}
	for _, a := range c.console {
		if !kernelArg.MatchString(a) {
			return fmt.Errorf("kernel console argument %q: want letters, digits and =,.:/_-", a)
		}
	}
	switch c.channel {
	case "stable", "beta", "alpha", "lts", "edge":
	default:
		return fmt.Errorf("Flatcar channel %q: want stable, beta, alpha, lts or edge", c.channel)
	}
	if !osVersion.MatchString(c.version) {
		return fmt.Errorf("Flatcar version %q: want current, a version such as 4152.2.3, or a test OS release's testos-…", c.version)
	}
	if !plainURL.MatchString(c.in.MatchboxURL) {
		return fmt.Errorf("matchbox HTTP endpoint %q: want http://HOST:PORT", c.in.MatchboxURL)
	}
	if !hostPort.MatchString(c.matchbox.Endpoint) {
		return fmt.Errorf("matchbox API endpoint %q: want HOST:PORT", c.matchbox.Endpoint)
	}
	for what, path := range map[string]string{"CA": c.matchbox.CAPath, "client certificate": c.matchbox.ClientCertPath, "client key": c.matchbox.ClientKeyPath} {
		if !plainPath.MatchString(path) {
			return fmt.Errorf("matchbox %s path %q: want an absolute path without spaces or quotes", what, path)
		}
	}
	if !plainPath.MatchString(c.dir) {
		return fmt.Errorf("configuration folder %q: want an absolute path without spaces or quotes", c.dir)
	}
	if c.storage != "" && len(c.storageNodes()) == 0 {
		return fmt.Errorf("storage provider %s: the plan has no storage nodes (choose them with --storage-type and --storage-nodes)", c.storage)
	}
	if b := c.in.Components.Backup; b != nil {
		if err := b.check(); err != nil {
			return err
		}
	}
	secondary := map[string]bool{}
	for _, n := range p.All() {
		secondary[n.SecondaryMAC] = true
	}
	for mac := range c.in.PublicIPs {
		if !secondary[mac] {
			return fmt.Errorf("--public-ips: [%s] is no node's secondary MAC", mac)
		}
	}
	return nil
}

// labelValue makes a node type a valid Kubernetes label value. nodes.csv
// types are one word of letters, digits, '-', '_' and '.', but a label
// value must also start and end alphanumeric and have at most 63
// characters: "_gpu_" becomes "gpu"; a type with nothing left gets no label.
func labelValue(s string) string {
	s = labelBad.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// writeSnippets writes every node's Container Linux Config snippets under
// cl/ and returns them by node name: for the installed system (internal
// address, the cluster's names in /etc/hosts, the public address) and for
// the installer (the public address). Files Racker no longer writes are
// removed: cl/ is Racker's.
func (c *lokoConfig) writeSnippets() (snippets, installer map[string][]string, err error) {
	snippets, installer = map[string][]string{}, map[string][]string{}
	keep := map[string]bool{}
	write := func(name, content string) (string, error) {
		path := filepath.Join(c.dir, SnippetDir, name)
		keep[name] = true
		if err := atomicfile.Write(path, []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("writing a Lokomotive snippet: %w", err)
		}
		return path, nil
	}
	hosts := c.hosts()
	for _, n := range c.in.Plan.Nodes {
		path, err := write(n.Hostname+".yaml", c.nodeSnippet(n, hosts))
		if err != nil {
			return nil, nil, err
		}
		snippets[n.Hostname] = []string{path}
		ip, ok := c.in.PublicIPs[n.SecondaryMAC]
		if !ok || ip.DHCP {
			continue // Flatcar runs DHCP on every other NIC by default
		}
		path, err = write(n.Hostname+"-public.yaml", publicSnippet(n.SecondaryMAC, ip))
		if err != nil {
			return nil, nil, err
		}
		snippets[n.Hostname] = append(snippets[n.Hostname], path)
		installer[n.Hostname] = []string{path}
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, SnippetDir))
	if err != nil {
		return nil, nil, fmt.Errorf("writing Lokomotive snippets: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] && strings.HasSuffix(e.Name(), ".yaml") {
			os.Remove(filepath.Join(c.dir, SnippetDir, e.Name()))
		}
	}
	return snippets, installer, nil
}

// hosts is /etc/hosts for every node: Lokomotive reaches the API server at
// CLUSTER.DOMAIN and etcd at CLUSTER-etcdN.DOMAIN, and a rack has no DNS
// server of its own, so the controllers' internal addresses carry those
// names (several controllers: several lines, resolved in turn); every
// node is known by its FQDN.
func (c *lokoConfig) hosts() string {
	name := c.in.Plan.ClusterName
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for i, n := range c.controllers {
		fmt.Fprintf(&b, "%s %s %s-etcd%d.%s %s.%s\n", n.IP, c.domainOf(n), name, i, c.domain, name, c.domain)
	}
	for _, n := range c.workers {
		fmt.Fprintf(&b, "%s %s\n", n.IP, c.domainOf(n))
	}
	return b.String()
}

// nodeSnippet is a node's Container Linux Config: its planned internal
// address on the primary NIC (Racker's DHCP reserves the same one) and the
// cluster's names.
func (c *lokoConfig) nodeSnippet(n plan.Node, hosts string) string {
	addr := netip.PrefixFrom(n.IP, c.in.Plan.Subnet.Bits())
	return "# Written by racker bootstrap --provision lokomotive for " + n.Hostname + ".\n" +
		"networkd:\n  units:\n    - name: 00-internal.network\n      contents: |\n" +
		indent("[Match]\nMACAddress="+n.PrimaryMAC+"\n\n[Network]\nDHCP=no\nAddress="+addr.String()+"\n", 8) +
		"storage:\n  files:\n    - path: /etc/hosts\n      filesystem: root\n      mode: 0644\n      contents:\n        inline: |\n" +
		indent(hosts, 10)
}

// publicSnippet configures the secondary NIC with a static address, as
// upstream's 10-public-stable.network did.
func publicSnippet(mac string, ip PublicIP) string {
	unit := "[Match]\nMACAddress=" + mac + "\n\n[Network]\nDHCP=no\nLinkLocalAddressing=no\nAddress=" + ip.Address.String() + "\nGateway=" + ip.Gateway.String() + "\n"
	for _, d := range ip.DNS {
		unit += "DNS=" + d.String() + "\n"
	}
	return "# Written by racker bootstrap --provision lokomotive from --public-ips.\n" +
		"networkd:\n  units:\n    - name: 10-public.network\n      contents: |\n" + indent(unit, 8)
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		if l == "\n" {
			b.WriteString(l)
			continue
		}
		b.WriteString(pad + l)
	}
	return b.String()
}

func (b *Backup) check() error {
	for what, v := range map[string]string{"S3 bucket": b.Bucket, "AWS region": b.Region} {
		if v == "" || !dnsLabel.MatchString(strings.ReplaceAll(v, ".", "-")) {
			return fmt.Errorf("backup: %s %q: want a name of lower-case letters, digits, dots and dashes", what, v)
		}
	}
	if b.Name != "" && !dnsLabel.MatchString(b.Name) {
		return fmt.Errorf("backup: name %q: want a DNS label", b.Name)
	}
	if !awsKeyValue.MatchString(b.AccessKeyID) || !awsKeyValue.MatchString(b.SecretAccessKey) {
		return fmt.Errorf("backup: the AWS access key and secret key are required (one word each)")
	}
	return nil
}
