package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// StateVersion reads the state layout version from the state dir. A state
// dir without the file but with content predates versioning and is layout 1;
// an empty or missing one is fresh (0).
func StateVersion(stateDir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, StateVersionFile))
	if os.IsNotExist(err) {
		entries, derr := os.ReadDir(stateDir)
		if derr != nil || len(entries) == 0 {
			return 0, nil
		}
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the state version: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("reading %s: %q is not a state version", filepath.Join(stateDir, StateVersionFile), strings.TrimSpace(string(data)))
	}
	return v, nil
}

// Migrations says, before anything is downloaded or changed, which state
// migrations (target state versions) installing release info would run on
// the state on disk, or why that state rules the release out.
func (in *Installer) Migrations(info *Info) ([]int, error) {
	return in.planMigrations(info, true)
}

// planMigrations decides, before anything is downloaded or changed, whether
// release info can run on the state on disk, and which migrations
// (target versions) that takes.
func (in *Installer) planMigrations(info *Info, allow bool) ([]int, error) {
	stateDir := in.Layout.at(in.Layout.StateDir)
	have, err := StateVersion(stateDir)
	if err != nil {
		return nil, err
	}
	switch {
	case have == 0 || have == info.StateVersion:
		return nil, nil
	case have > info.StateVersion:
		return nil, fmt.Errorf("release %s reads state version %d, but %s holds version %d (written by a newer release): refusing; install a release with state version %d or later", info.Version, info.StateVersion, stateDir, have, have)
	case have < info.MigratesFrom:
		return nil, fmt.Errorf("release %s migrates state from version %d on, but %s holds version %d: refusing; upgrade through an intermediate release first", info.Version, info.MigratesFrom, stateDir, have)
	case !allow:
		return nil, fmt.Errorf("release %s needs the state migrated from version %d to %d, which only `racker upgrade` (or `get`) does", info.Version, have, info.StateVersion)
	}
	var steps []int
	for v := have + 1; v <= info.StateVersion; v++ {
		steps = append(steps, v)
	}
	return steps, nil
}

// migrate runs the new version's migrations/N.sh, one state version at a
// time, recording each version reached, so an interrupted upgrade resumes
// where it stopped. A fresh state dir gets the release's version recorded.
func (in *Installer) migrate(ctx context.Context, versionDir string, steps []int) error {
	if err := in.step(StepMigrate); err != nil {
		return err
	}
	stateDir := in.Layout.at(in.Layout.StateDir)
	info, err := ReadInfo(versionDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("creating the state dir: %w", err)
	}
	have, err := StateVersion(stateDir)
	if err != nil {
		return err
	}
	if have == 0 {
		return writeStateVersion(stateDir, info.StateVersion)
	}
	for _, v := range steps {
		cmd := in.migrationCmd(ctx, versionDir, v)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("migrating the state in %s from version %d to %d: %w: %s (state stays at version %d)", stateDir, v-1, v, err, strings.TrimSpace(string(out)), v-1)
		}
		if err := writeStateVersion(stateDir, v); err != nil {
			return err
		}
		in.log().Info("migrated state", "dir", stateDir, "version", v)
	}
	return nil
}

// migrationCmd runs migrations/V.sh with the host's sh; from the installer
// container (which has no shell) it runs chrooted into the host's root.
func (in *Installer) migrationCmd(ctx context.Context, versionDir string, v int) *exec.Cmd {
	script := filepath.Join(versionDir, MigrationsDir, strconv.Itoa(v)+".sh")
	stateDir := in.Layout.at(in.Layout.StateDir)
	var attr *syscall.SysProcAttr
	if in.HostChroot {
		script = strings.TrimPrefix(script, filepath.Clean(in.Layout.Root))
		stateDir = in.Layout.StateDir
		attr = &syscall.SysProcAttr{Chroot: in.Layout.Root}
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", script, stateDir)
	cmd.Env = append(os.Environ(), "RACKER_STATE_DIR="+stateDir)
	cmd.SysProcAttr = attr
	if in.HostChroot {
		cmd.Dir = "/"
	}
	return cmd
}

func writeStateVersion(stateDir string, v int) error {
	if err := atomicfile.Write(filepath.Join(stateDir, StateVersionFile), []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording state version %d: %w", v, err)
	}
	return nil
}
