package netenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Item kinds in a record, in the order Create makes them; Teardown walks the
// record backwards.
const (
	kindNamespace = "netns"
	kindBridge    = "bridge"
	kindVeth      = "veth"
	kindIPTables  = "iptables"
	kindSysctl    = "sysctl"
)

// item is one thing Create made (or was about to make when it crashed).
type item struct {
	Kind  string   `json:"kind"`
	Name  string   `json:"name"`            // interface, namespace or sysctl path
	Table string   `json:"table,omitempty"` // iptables table
	Rule  []string `json:"rule,omitempty"`  // iptables chain + rule spec
	Prev  string   `json:"prev,omitempty"`  // sysctl value before Create changed it
}

// record is the JSON file next to the simulator's or test's state: the
// topology asked for and every item made, written before each item is made.
type record struct {
	Version  int      `json:"version"`
	Topology Topology `json:"topology"`
	Items    []item   `json:"items"`
}

func readRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("while reading network record %s: %w", path, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("while parsing network record %s: %w", path, err)
	}
	return &r, nil
}

// save writes the record atomically (temp file, fsync, rename) so a crash
// leaves either the old or the new record, never a torn one.
func (r *record) save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("while encoding network record: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while creating the folder of network record %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("while writing network record %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("while writing network record %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("while syncing network record %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("while writing network record %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("while replacing network record %s: %w", path, err)
	}
	return nil
}
