package unitd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// adminDir is where enable writes its links, as systemctl does.
const adminDir = "/etc/systemd/system"

// wantsLinks are the links enable makes for u: one per WantedBy= and
// RequiredBy= target, pointing at the unit file.
func wantsLinks(u *Unit) map[string]string {
	links := map[string]string{}
	for _, t := range u.WantedBy {
		links[filepath.Join(adminDir, t+".wants", u.Name)] = u.Path
	}
	for _, t := range u.RequiredBy {
		links[filepath.Join(adminDir, t+".requires", u.Name)] = u.Path
	}
	return links
}

// EnabledState is what `systemctl is-enabled` prints: enabled (a link
// exists), disabled (it could be enabled), static (no [Install] section).
func (m *Manager) EnabledState(name string) (string, error) {
	u, err := LoadUnit(m.Root, name, m.Dirs)
	if err != nil {
		return "", err
	}
	if !u.HasInstall {
		return "static", nil
	}
	for link := range wantsLinks(u) {
		if _, err := os.Lstat(filepath.Join(m.Root, link)); err == nil {
			return "enabled", nil
		}
	}
	return "disabled", nil
}

// enableCmd makes or removes a unit's [Install] links, printing what it
// did as systemctl does. The unit file is read afresh: enable works on
// files, not on loaded units.
func (m *Manager) enableCmd(enable bool, name string, stdout, stderr io.Writer) int {
	u, err := LoadUnit(m.Root, name, m.Dirs)
	if err != nil {
		verb := "enable"
		if !enable {
			verb = "disable"
		}
		fmt.Fprintf(stderr, "Failed to %s unit: Unit file %s does not exist.\n", verb, name)
		return exitFailure
	}
	if !u.HasInstall {
		fmt.Fprintf(stderr, "The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\nAlias= settings in the [Install] section). %s is static; nothing to %s.\n", name, map[bool]string{true: "enable", false: "disable"}[enable])
		return exitOK
	}
	for link, target := range wantsLinks(u) {
		p := filepath.Join(m.Root, link)
		if !enable {
			if err := os.Remove(p); err == nil {
				fmt.Fprintf(stdout, "Removed \"%s\".\n", link)
			}
			continue
		}
		if t, err := os.Readlink(p); err == nil && t == target {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintf(stderr, "Failed to enable unit: %v\n", err)
			return exitFailure
		}
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			fmt.Fprintf(stderr, "Failed to enable unit: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "Created symlink %s → %s.\n", link, target)
	}
	return exitOK
}
