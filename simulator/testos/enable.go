package testos

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// unitDir is where Ignition writes units and where enabling links them, as
// on Flatcar: on an installed system it lives on the ROOT partition, so
// what is enabled on the first boot stays enabled on every later one.
const unitDir = "etc/systemd/system"

// bootTargets are the targets a Flatcar boot into multi-user.target pulls
// in; units linked into their .wants or .requires folders are started.
var bootTargets = []string{"sysinit.target", "local-fs.target", "basic.target", "network.target",
	"network-online.target", "multi-user.target", "default.target"}

// enableUnit does what `systemctl enable` does for Ignition's
// "enabled": true: a symlink in TARGET.wants for each WantedBy= (and
// TARGET.requires for RequiredBy=) of the unit's [Install] section. A unit
// with none cannot be enabled; systemctl says so and does nothing, and so
// does the test OS (the unit then never starts, as on Flatcar).
func enableUnit(root, name string, say func(string)) error {
	spec := specOf(root, name)
	if len(spec.WantedBy) == 0 {
		say(fmt.Sprintf("unit %s has no [Install] WantedBy=: enabling it does nothing (as systemctl enable)", name))
		return nil
	}
	for _, target := range spec.WantedBy {
		dir := filepath.Join(root, unitDir, target+".wants")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("while enabling %s: %w", name, err)
		}
		link := filepath.Join(dir, name)
		_ = os.Remove(link)
		if err := os.Symlink("/"+unitDir+"/"+name, link); err != nil {
			return fmt.Errorf("while enabling %s: %w", name, err)
		}
	}
	return nil
}

// disableUnit removes a unit's links from every .wants/.requires folder.
func disableUnit(root, name string) {
	for _, pattern := range []string{"*.wants", "*.requires"} {
		dirs, _ := filepath.Glob(filepath.Join(root, unitDir, pattern))
		for _, d := range dirs {
			_ = os.Remove(filepath.Join(d, name))
		}
	}
}

// maskUnit links the unit to /dev/null, which systemd never starts.
func maskUnit(root, name string) error {
	path := filepath.Join(root, unitDir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while masking %s: %w", name, err)
	}
	_ = os.Remove(path)
	if err := os.Symlink("/dev/null", path); err != nil {
		return fmt.Errorf("while masking %s: %w", name, err)
	}
	return nil
}

// EnabledUnits lists the units a boot starts: those linked into the boot
// targets' .wants and .requires folders under root, masked ones left out,
// in name order (the test OS starts them one after another).
func EnabledUnits(root string) []string {
	seen := map[string]bool{}
	var out []string
	for _, target := range bootTargets {
		for _, kind := range []string{".wants", ".requires"} {
			entries, _ := os.ReadDir(filepath.Join(root, unitDir, target+kind))
			for _, e := range entries {
				name := e.Name()
				if seen[name] || !strings.Contains(name, ".") {
					continue
				}
				seen[name] = true
				if dest, err := os.Readlink(filepath.Join(root, unitDir, name)); err == nil && dest == "/dev/null" {
					continue
				}
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}
