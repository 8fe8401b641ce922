package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// activate makes the current version usable on the host: executables linked
// into BinDir, systemd units refreshed, started or restarted.
func (in *Installer) activate(ctx context.Context, res *Result) error {
	if err := in.step(StepLink); err != nil {
		return err
	}
	if err := in.linkExecutables(); err != nil {
		return err
	}
	if err := in.step(StepUnits); err != nil {
		return err
	}
	return in.refreshUnits(ctx, res)
}

// linkExecutables links every file of current/bin into BinDir through the
// current symlink (relative links, valid both on the host and under Root),
// and drops links to executables the current version no longer has.
func (in *Installer) linkExecutables() error {
	l := in.Layout
	binDir := l.at(l.BinDir)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("linking executables: %w", err)
	}
	currentBin := filepath.Join(l.InstallDir, "current", "bin")
	entries, err := os.ReadDir(l.at(currentBin))
	if err != nil {
		return fmt.Errorf("linking executables: %w", err)
	}
	relBase, err := filepath.Rel(l.BinDir, currentBin)
	if err != nil {
		return fmt.Errorf("linking executables: %w", err)
	}
	for _, e := range entries {
		target := filepath.Join(relBase, e.Name())
		link := filepath.Join(binDir, e.Name())
		if t, err := os.Readlink(link); err == nil && t == target {
			continue
		}
		if err := replaceSymlink(target, link); err != nil {
			return fmt.Errorf("linking %s: %w", link, err)
		}
	}
	// Links into current/bin that now dangle name a dropped module.
	links, _ := os.ReadDir(binDir)
	for _, e := range links {
		link := filepath.Join(binDir, e.Name())
		t, err := os.Readlink(link)
		if err != nil || !strings.HasPrefix(t, relBase+string(filepath.Separator)) {
			continue
		}
		if _, err := os.Stat(link); os.IsNotExist(err) {
			os.Remove(link)
		}
	}
	return nil
}

// refreshUnits copies current/systemd/*.service into UnitDir when they
// changed (never over a unit changed by hand, units.go; the units' settings
// file is written when there is none) and reloads systemd; then a unit installed for the first time
// is enabled and started (racker serve runs as soon as Racker is
// installed, and after every boot), and a unit that was there before is
// restarted when it runs, or, when the version changed (update, upgrade,
// rollback), when it is enabled: the new version serves, not the old
// process. A unit the operator disabled and stopped is left so.
func (in *Installer) refreshUnits(ctx context.Context, res *Result) error {
	l := in.Layout
	src := filepath.Join(l.CurrentLink(), UnitsDir)
	entries, err := os.ReadDir(src)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("installing systemd units: %w", err)
	}
	unitDir := l.at(l.UnitDir)
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		return fmt.Errorf("installing systemd units: %w", err)
	}
	var units []string
	fresh := map[string]bool{}
	changed := false
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return fmt.Errorf("installing unit %s: %w", e.Name(), err)
		}
		units = append(units, e.Name())
		c, isNew, err := in.writeUnit(unitDir, e.Name(), data, res)
		if err != nil {
			return err
		}
		fresh[e.Name()] = isNew
		changed = changed || c
	}
	if len(units) > 0 {
		if err := in.writeEnvFile(res); err != nil {
			return err
		}
	}
	if in.Services == nil || !in.Services.Available() {
		note := "no systemd on this host: units written, nothing reloaded or started"
		if in.Services == nil {
			note = "units written to " + unitDir + "; systemd left alone (not this host's root)"
		}
		res.Notes = append(res.Notes, note)
		in.log().Debug(note, "units", units)
		return nil
	}
	if changed {
		if err := in.Services.Reload(ctx); err != nil {
			return fmt.Errorf("reloading systemd after installing units: %w", err)
		}
	}
	for _, u := range units {
		if fresh[u] {
			if err := in.Services.Enable(ctx, u); err != nil {
				return fmt.Errorf("enabling %s: %w", u, err)
			}
			if err := in.Services.Start(ctx, u); err != nil {
				return fmt.Errorf("starting %s: %w", u, err)
			}
			res.Started = append(res.Started, u)
			in.log().Info("enabled and started unit", "unit", u)
			continue
		}
		active, err := in.Services.IsActive(ctx, u)
		if err != nil {
			return fmt.Errorf("asking systemd about %s: %w", u, err)
		}
		enabled := false
		if !active && res.Changed {
			if enabled, err = in.Services.IsEnabled(ctx, u); err != nil {
				return fmt.Errorf("asking systemd about %s: %w", u, err)
			}
		}
		if !active && !enabled {
			if res.Changed {
				res.Notes = append(res.Notes, u+" is disabled and stopped: left so (`systemctl enable --now "+u+"` runs it)")
			}
			continue
		}
		if err := in.Services.Restart(ctx, u); err != nil {
			return fmt.Errorf("restarting %s: %w", u, err)
		}
		res.Restarted = append(res.Restarted, u)
		in.log().Info("restarted unit", "unit", u)
	}
	return nil
}
