package rack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/racker/racker/netenv"
)

// Racker's default paths on a real management node; inside the simulated
// one they are the rack's own folders.
const (
	mgmtOEMPath = "/usr/share/oem"
	mgmtOptPath = "/opt" // holds racker-state, racker, bin
)

// EnterMgmt turns the calling process into a process of the management
// node and runs argv there: it joins the node's network namespace, takes a
// private mount namespace in which /usr/share/oem and /opt are the rack's
// folders for the node (and /sys shows the node's interfaces), puts /opt/bin
// first on PATH and execs argv. It returns only on failure. Mounts made here
// never reach the host (slave propagation) and end with the process.
func EnterMgmt(s *State, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command to run in the management node")
	}
	// unshare and setns act on this thread, and execve keeps this thread's
	// namespaces: stay on it until the exec.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("while making a private mount namespace for the management node: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("while making mounts private for the management node: %w", err)
	}
	h, err := netns.GetFromPath(netenv.NamespacePath(s.MgmtNamespace()))
	if err != nil {
		return fmt.Errorf("while opening the management node's namespace %s (is the rack up?): %w", s.MgmtNamespace(), err)
	}
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("while entering the management node's namespace %s: %w", s.MgmtNamespace(), err)
	}
	h.Close()
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
		if err := unix.Mount(s.MgmtNamespace(), "/sys", "sysfs", 0, ""); err != nil {
			return fmt.Errorf("while mounting the management node's /sys: %w", err)
		}
	}
	if err := mountOEM(s); err != nil {
		return err
	}
	if err := unix.Mount(s.OptDir(), mgmtOptPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("while mounting %s on %s in the management node: %w", s.OptDir(), mgmtOptPath, err)
	}
	env := withPath(os.Environ(), "/opt/bin")
	os.Setenv("PATH", pathOf(env))
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("in the management node: %w", err)
	}
	if err := syscall.Exec(bin, argv, env); err != nil {
		return fmt.Errorf("while running %s in the management node: %w", argv[0], err)
	}
	return nil
}

// mountOEM puts the rack's OEM folder on /usr/share/oem. When the host has
// no /usr/share/oem to mount on, an overlay on /usr/share provides the mount
// point without writing to the host. Its upper and work folders live on a
// tmpfs of this process's own mount namespace: overlayfs refuses a work
// folder that another mount uses, and several `racker-sim exec` run at once.
func mountOEM(s *State) error {
	if _, err := os.Stat(mgmtOEMPath); err != nil {
		base := filepath.Join(s.MgmtDir(), ".usr-share")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return fmt.Errorf("while preparing the management node's /usr/share: %w", err)
		}
		if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
			return fmt.Errorf("while preparing the management node's /usr/share: %w", err)
		}
		upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
		if err := os.MkdirAll(filepath.Join(upper, "oem"), 0o755); err != nil {
			return fmt.Errorf("while preparing the management node's /usr/share: %w", err)
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return fmt.Errorf("while preparing the management node's /usr/share: %w", err)
		}
		opts := fmt.Sprintf("lowerdir=/usr/share,upperdir=%s,workdir=%s", upper, work)
		if err := unix.Mount("overlay", "/usr/share", "overlay", 0, opts); err != nil {
			return fmt.Errorf("while overlaying /usr/share in the management node: %w", err)
		}
	}
	if err := unix.Mount(s.OEMDir(), mgmtOEMPath, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("while mounting %s on %s in the management node: %w", s.OEMDir(), mgmtOEMPath, err)
	}
	return nil
}

func withPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
			continue
		}
		out = append(out, e)
	}
	return append(out, "PATH="+dir+":"+path)
}

func pathOf(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			return v
		}
	}
	return ""
}

// startBackground starts argv as a daemon of the rack (its own session,
// output to logPath) and returns its record. A goroutine reaps it, so a
// long-lived caller (a test) never keeps zombies.
func startBackground(role string, argv []string, logPath string) (Process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return Process{}, fmt.Errorf("while creating the log folder of %s: %w", role, err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, fmt.Errorf("while opening the log of %s: %w", role, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return Process{}, err
	}
	defer devnull.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("while starting %s: %w", role, err)
	}
	go func() { _ = cmd.Wait() }()
	p := Process{Role: role, PID: cmd.Process.Pid, Start: procStart(cmd.Process.Pid), Log: logPath}
	return p, nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("while reading %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("while creating %s: %w", filepath.Dir(dst), err)
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("while writing %s: %w", tmp, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("while copying %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("while writing %s: %w", tmp, err)
	}
	return os.Rename(tmp, dst)
}
