package ignition

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Where the boot config's inputs live in Racker's state folder.
const (
	// SSHPublicKeyPath is written by `racker factory gen-ssh-key`.
	SSHPublicKeyPath = "ssh/id_ed25519.pub"
	// TypeSnippetDir holds TYPE.ign for every node of a node type.
	TypeSnippetDir = "ignition/types"
	// NodeSnippetDir holds MAC.ign (lower case, colons) for one node.
	NodeSnippetDir = "ignition/nodes"
)

// SSHKeys reads the cluster's public key(s) from the state folder.
func SSHKeys(stateDir string) ([]string, error) {
	path := filepath.Join(stateDir, SSHPublicKeyPath)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the cluster's SSH key: %s does not exist (run racker factory gen-ssh-key)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's SSH key: %w", err)
	}
	var keys []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			keys = append(keys, l)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("reading the cluster's SSH key: %s is empty", path)
	}
	return keys, nil
}

// Snippets reads the optional per-type and per-node snippets of a node, in
// merge order (type, then node). Missing files are not an error; they are
// read on every request, so an operator's edit applies to the next boot
// without a restart.
func Snippets(stateDir, nodeType, mac string) ([]Snippet, error) {
	var out []Snippet
	var rels []string
	// Names that could leave the folder ("../x") are never looked up.
	if safeName.MatchString(nodeType) {
		rels = append(rels, filepath.Join(TypeSnippetDir, nodeType+".ign"))
	}
	if safeName.MatchString(strings.ReplaceAll(mac, ":", "")) {
		rels = append(rels, filepath.Join(NodeSnippetDir, mac+".ign"))
	}
	for _, rel := range rels {
		b, err := os.ReadFile(filepath.Join(stateDir, rel))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading Ignition snippet %s: %w", rel, err)
		}
		out = append(out, Snippet{Name: rel, JSON: b})
	}
	return out, nil
}
