package netenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const ipForwardSysctl = "/proc/sys/net/ipv4/ip_forward"

// natRules are the iptables rules that make one NAT (pure, so they are
// unit-tested): masquerade what leaves the subnet through another interface,
// and let forwarded traffic in and out of the bridge even when the host's
// FORWARD policy is DROP. Each carries a comment naming the bridge, so a
// person reading `iptables -S` knows who made it.
func natRules(n NAT) []item {
	c := []string{"-m", "comment", "--comment", "netenv:" + n.Bridge}
	rule := func(table string, spec ...string) item {
		return item{Kind: kindIPTables, Name: n.Bridge, Table: table, Rule: append(spec, c...)}
	}
	return []item{
		rule("nat", "POSTROUTING", "-s", n.Subnet.Masked().String(), "!", "-o", n.Bridge, "-j", "MASQUERADE"),
		rule("filter", "FORWARD", "-i", n.Bridge, "-j", "ACCEPT"),
		rule("filter", "FORWARD", "-o", n.Bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
	}
}

// iptables runs one iptables action (-A, -D, -C) for a recorded rule.
func iptables(action string, it item) error {
	args := append([]string{"-w", "-t", it.Table, action}, it.Rule...)
	var stderr bytes.Buffer
	cmd := exec.Command("iptables", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func addRule(it item) error {
	if iptables("-C", it) == nil {
		return nil // already there (a re-run after a crash)
	}
	return iptables("-A", it)
}

// deleteRule removes every copy of a rule; a rule already gone is fine.
func deleteRule(it item) error {
	for i := 0; i < 16 && iptables("-C", it) == nil; i++ {
		if err := iptables("-D", it); err != nil {
			return err
		}
	}
	return nil
}

// otherNATs says whether another environment's NAT rules are still in place
// (ours are gone by the time forwarding is restored), so that tearing down
// one rack does not cut another one off its uplink.
func otherNATs() bool {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	return err == nil && strings.Contains(string(out), "--comment netenv:")
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("while reading %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(path, v string) error {
	if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("while writing %s=%s: %w", path, v, err)
	}
	return nil
}
