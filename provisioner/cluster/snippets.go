package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/racker/racker/provisioner/ignition"
	"github.com/racker/racker/provisioner/internal/atomicfile"
	"github.com/racker/racker/provisioner/plan"
)

// PublicIPsFile records the --public-ips choices and the snippets written
// for them, in the state folder.
const PublicIPsFile = "public-ips.json"

// PublicNetworkFile is the systemd-networkd file for a node's secondary NIC.
const PublicNetworkFile = "/etc/systemd/network/10-public.network"

type publicRecord struct {
	IPs PublicIPs `json:"ips"`
	// Written maps a snippet path (relative to the state folder) to the
	// SHA-256 of what was written, so a later run replaces only its own
	// snippets and never an operator's.
	Written map[string]string `json:"written"`
}

// networkUnit is the networkd configuration of a secondary NIC.
func networkUnit(secondaryMAC string, ip PublicIP) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n\n[Network]\n", secondaryMAC)
	if ip.DHCP {
		b.WriteString("DHCP=yes\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Address=%s\n", ip.Address)
	if ip.Gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", ip.Gateway)
	}
	for _, d := range ip.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	return b.String()
}

// snippet is an Ignition config holding one file.
func snippet(path, content string) ([]byte, error) {
	type file struct {
		Path      string            `json:"path"`
		Mode      int               `json:"mode"`
		Overwrite bool              `json:"overwrite"`
		Contents  map[string]string `json:"contents"`
	}
	cfg := map[string]any{
		"ignition": map[string]string{"version": ignition.Version},
		"storage": map[string]any{"files": []file{{Path: path, Mode: 0o644, Overwrite: true,
			Contents: map[string]string{"source": "data:," + url.PathEscape(content)}}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	return append(b, '\n'), err
}

// WritePublicIPSnippets gives every node with a --public-ips entry a
// per-node Ignition snippet (STATE/ignition/nodes/MAC.ign) that configures
// its secondary NIC, which the boot config merges at first boot. A snippet
// the operator wrote is never replaced: that is an error naming the file.
// Snippets written for entries no longer in ips are removed.
func WritePublicIPSnippets(stateDir string, p *plan.Plan, ips PublicIPs) error {
	recPath := filepath.Join(stateDir, PublicIPsFile)
	var rec publicRecord
	if b, err := os.ReadFile(recPath); err == nil {
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("reading %s: %w", recPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ours := func(rel string) (bool, error) {
		b, err := os.ReadFile(filepath.Join(stateDir, rel))
		if errors.Is(err, os.ErrNotExist) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		sum := sha256.Sum256(b)
		return rec.Written[rel] == hex.EncodeToString(sum[:]), nil
	}
	want := map[string][]byte{}
	bySecondary := map[string]plan.Node{}
	for _, n := range p.Servers() {
		bySecondary[n.SecondaryMAC] = n
	}
	macs := make([]string, 0, len(ips))
	for m := range ips {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	for _, m := range macs {
		n, ok := bySecondary[m]
		if !ok {
			return fmt.Errorf("--public-ips: [%s] is no node's secondary MAC", m)
		}
		b, err := snippet(PublicNetworkFile, networkUnit(m, ips[m]))
		if err != nil {
			return err
		}
		want[filepath.Join(ignition.NodeSnippetDir, n.PrimaryMAC+".ign")] = b
	}
	written := map[string]string{}
	for rel, b := range want {
		ok, err := ours(rel)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("--public-ips: %s holds an operator's snippet; add %s for the secondary NIC there, or remove it", filepath.Join(stateDir, rel), PublicNetworkFile)
		}
		path := filepath.Join(stateDir, rel)
		if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, b) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := atomicfile.Write(path, b, 0o644); err != nil {
				return err
			}
		}
		sum := sha256.Sum256(b)
		written[rel] = hex.EncodeToString(sum[:])
	}
	for rel := range rec.Written {
		if _, still := want[rel]; !still {
			if ok, _ := ours(rel); ok {
				os.Remove(filepath.Join(stateDir, rel))
			}
		}
	}
	b, err := json.MarshalIndent(publicRecord{IPs: ips, Written: written}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(recPath, append(b, '\n'), 0o644)
}
