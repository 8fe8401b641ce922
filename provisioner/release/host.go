package release

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Services is the host's service manager, as far as installs need it:
// a first install enables and starts Racker's units, later ones restart
// them (Installer.refreshUnits).
type Services interface {
	// Available says whether the host runs systemd at all.
	Available() bool
	Reload(ctx context.Context) error
	IsActive(ctx context.Context, unit string) (bool, error)
	// IsEnabled says whether the unit starts at boot.
	IsEnabled(ctx context.Context, unit string) (bool, error)
	Enable(ctx context.Context, unit string) error
	Start(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
}

// Systemctl drives the host's systemd with its own systemctl. With Chroot
// set (/proc/1/root, from the installer container) it runs the host's
// nsenter chrooted into the host's root to enter pid 1's namespaces, since a
// Go process cannot join another mount namespace itself.
type Systemctl struct {
	Chroot string
}

// Available reports sd_booted(): /run/systemd/system exists.
func (s Systemctl) Available() bool {
	st, err := os.Stat(filepath.Join(s.root(), "run/systemd/system"))
	return err == nil && st.IsDir()
}

func (s Systemctl) root() string {
	if s.Chroot == "" {
		return "/"
	}
	return s.Chroot
}

func (s Systemctl) cmd(ctx context.Context, args ...string) *exec.Cmd {
	if s.Chroot == "" {
		return exec.CommandContext(ctx, "systemctl", args...)
	}
	nsenter := "/usr/bin/nsenter"
	if _, err := os.Stat(filepath.Join(s.Chroot, nsenter)); err != nil {
		nsenter = "/bin/nsenter"
	}
	// Short options: util-linux and busybox nsenter both take them; -r/-w
	// take pid 1's root and cwd, in case init itself runs chrooted.
	argv := append([]string{"-t", "1", "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", "systemctl"}, args...)
	cmd := exec.CommandContext(ctx, nsenter, argv...)
	cmd.Path = nsenter // resolved inside the chroot, not here
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.Chroot}
	return cmd
}

func (s Systemctl) run(ctx context.Context, args ...string) error {
	out, err := s.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (s Systemctl) Reload(ctx context.Context) error { return s.run(ctx, "daemon-reload") }

func (s Systemctl) Restart(ctx context.Context, unit string) error {
	return s.run(ctx, "restart", unit)
}

func (s Systemctl) Enable(ctx context.Context, unit string) error { return s.run(ctx, "enable", unit) }

func (s Systemctl) Start(ctx context.Context, unit string) error { return s.run(ctx, "start", unit) }

// IsActive: `systemctl is-active` exits 0 for active, 3 (or others) when not.
func (s Systemctl) IsActive(ctx context.Context, unit string) (bool, error) {
	return s.query(ctx, "is-active", unit)
}

// IsEnabled: `systemctl is-enabled` exits 0 for enabled (or static), 1
// for disabled.
func (s Systemctl) IsEnabled(ctx context.Context, unit string) (bool, error) {
	return s.query(ctx, "is-enabled", unit)
}

func (s Systemctl) query(ctx context.Context, verb, unit string) (bool, error) {
	err := s.cmd(ctx, verb, "--quiet", unit).Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee):
		return false, nil
	default:
		return false, fmt.Errorf("systemctl %s %s: %w", verb, unit, err)
	}
}

// HostAccess is how an install reaches the host it installs on.
type HostAccess struct {
	// Root is "/" on the host, /proc/1/root from a container.
	Root string
	// InContainer is true when running in the installer container.
	InContainer bool
}

// DetectHost finds the host from here. In a container (the image's default
// command) it needs `--pid host` (pid 1 is the host's init, and
// /proc/1/root its root file system) and `--privileged` (to reach into pid
// 1's namespaces); it refuses clearly without them.
func DetectHost() (HostAccess, error) {
	if !inContainer() {
		return HostAccess{Root: "/"}, nil
	}
	const hint = "run the installer as `docker run --rm --privileged --pid host IMAGE`"
	if os.Getpid() == 1 {
		return HostAccess{}, fmt.Errorf("racker install runs in a container as pid 1, so it cannot see the host: %s", hint)
	}
	if !hasCapSysAdmin() {
		return HostAccess{}, fmt.Errorf("racker install runs in an unprivileged container: %s", hint)
	}
	hostNS, err := os.Readlink("/proc/1/ns/mnt")
	if err != nil {
		return HostAccess{}, fmt.Errorf("racker install cannot inspect the host's namespaces (%v): %s", err, hint)
	}
	selfNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return HostAccess{}, fmt.Errorf("reading this process's namespaces: %w", err)
	}
	if hostNS == selfNS {
		return HostAccess{}, fmt.Errorf("racker install runs in a container that shares pid 1's mount namespace; pass --root / if this is the host, or %s", hint)
	}
	if _, err := os.Stat("/proc/1/root/etc"); err != nil {
		return HostAccess{}, fmt.Errorf("racker install cannot read the host's root file system (%v): %s", err, hint)
	}
	return HostAccess{Root: "/proc/1/root", InContainer: true}, nil
}

func inContainer() bool {
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return os.Getenv("container") != ""
}

// hasCapSysAdmin reads the effective capabilities of this process;
// --privileged grants CAP_SYS_ADMIN (bit 21), plain `docker run` does not.
func hasCapSysAdmin() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<21) != 0
		}
	}
	return false
}

// PayloadDir returns the payload folder the running executable belongs to
// (…/bin/racker → …), when it has a release.json: in the installer image
// that is /racker, on a host <install-dir>/versions/V.
func PayloadDir() (string, bool) {
	exe, err := os.Executable()
	if err != nil {
		return "", false
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir := filepath.Dir(filepath.Dir(exe))
	if _, err := os.Stat(filepath.Join(dir, InfoFile)); err != nil {
		return "", false
	}
	return dir, true
}
