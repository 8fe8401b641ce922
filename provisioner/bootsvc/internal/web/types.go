package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/racker/racker/provisioner/ignition"
)

// TypesFile holds per node type settings in the state folder, so the serial
// console and the install disk are the operator's choice per hardware type
// rather than hard-coded:
//
//	{"red": {"console": "ttyS1,57600n8", "install_disk": "/dev/disk/by-path/pci-0000:00:17.0-ata-1"},
//	 "purple": {"install_disk": ">=400GB"}}
//
// install_disk is an ignition.DiskRule: a /dev path (by-path, by-id, with
// a glob for by-id names), or ">=SIZE"; without one a node installs to
// the smallest unused disk over 10 GB, Flatcar's own rule.
// It is read when the server starts and Config.Types is nil.
const TypesFile = "node-types.json"

type typeSettingsJSON struct {
	Console     string `json:"console"`
	InstallDisk string `json:"install_disk"`
}

// ReadTypeSettings reads TypesFile from stateDir; a missing file is no
// settings (every type uses the defaults).
func ReadTypeSettings(stateDir string) (map[string]TypeSettings, error) {
	path := filepath.Join(stateDir, TypesFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading node type settings: %w", err)
	}
	var raw map[string]typeSettingsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("reading node type settings %s: %w", path, err)
	}
	out := map[string]TypeSettings{}
	for t, s := range raw {
		if _, err := ignition.ParseDiskRule(s.InstallDisk); err != nil {
			return nil, fmt.Errorf("reading node type settings %s: type %s: %w", path, t, err)
		}
		if !validConsole(s.Console) {
			return nil, fmt.Errorf("reading node type settings %s: type %s: console %q is not like ttyS0,115200n8", path, t, s.Console)
		}
		out[t] = TypeSettings{Console: s.Console, InstallDisk: s.InstallDisk}
	}
	return out, nil
}

func validDisk(d string) bool {
	_, err := ignition.ParseDiskRule(d)
	return err == nil
}

// validConsole accepts "", "-" and kernel console values such as
// ttyS1,57600n8 or tty0: they end up on a kernel command line.
func validConsole(c string) bool {
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ',' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
