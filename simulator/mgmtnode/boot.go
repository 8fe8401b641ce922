package mgmtnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BootCommand is the hidden racker-sim command that becomes the node's PID
// 1: it mounts the node's file systems, pivots into its root and execs the
// OS's /sbin/init.
const BootCommand = "mgmt-boot"

// Boot starts the node: a new mount, PID, UTS and IPC namespace inside
// the network namespace at netnsPath, whose first process is
// `simBinary mgmt-boot --node-dir DIR [--libvirt DIR]` (Stage1), which execs the node's
// init. The console goes to l.Console(). It returns the node's PID 1 as
// the host sees it, and how it ended if it ends while the caller runs; the
// process outlives the caller (its own session).
func Boot(l Layout, netnsPath, simBinary string) (*os.Process, <-chan *os.ProcessState, error) {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, nil, err
	}
	console, err := os.OpenFile(l.Console(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("while opening the management node's console log: %w", err)
	}
	defer console.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	defer devnull.Close()
	args := []string{BootCommand, "--node-dir", l.Dir}
	if l.Libvirt != "" {
		args = append(args, "--libvirt", l.Libvirt)
	}
	cmd := exec.Command(simBinary, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, console, console
	// The stage runs racker-sim with its caller's environment; the node's
	// init gets a clean one.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
	}
	if err := startIn(cmd, netnsPath, syscall.CLONE_NEWNET); err != nil {
		return nil, nil, fmt.Errorf("while booting the management node: %w", err)
	}
	// Reap it if it ends while we run, and say how it ended.
	ended := make(chan *os.ProcessState, 1)
	go func() { _ = cmd.Wait(); ended <- cmd.ProcessState }()
	return cmd.Process, ended, nil
}

// startIn starts cmd from a thread that joined the namespace at nsPath
// (of kind nstype): the child inherits it, the caller does not. The
// thread is never given back to the Go scheduler (it ends with its
// goroutine), so no other goroutine ever runs in that namespace.
func startIn(cmd *exec.Cmd, nsPath string, nstype int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if nstype == syscall.CLONE_NEWNET {
			h, err := netns.GetFromPath(nsPath)
			if err != nil {
				errc <- fmt.Errorf("while opening the namespace %s: %w", nsPath, err)
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				errc <- fmt.Errorf("while entering the namespace %s: %w", nsPath, err)
				return
			}
		} else {
			fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("while opening the namespace %s: %w", nsPath, err)
				return
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, nstype); err != nil {
				errc <- fmt.Errorf("while entering the namespace %s: %w", nsPath, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Stage1 is the node's first process (PID 1 of its namespaces, still
// running racker-sim from the host): it makes the node's mounts, pivots
// into its root and execs /sbin/init from the node's own /usr. Mounts are
// private to the node: nothing reaches the host.
func Stage1(l Layout) error {
	if os.Getpid() != 1 {
		return errors.New("mgmt-boot must run as PID 1 of the management node's namespaces (racker-sim up starts it)")
	}
	root := l.Root()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("while making the node's mounts private: %w", err)
	}
	type mnt struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}
	at := func(p string) string { return filepath.Join(root, p) }
	mounts := []mnt{
		{root, root, "", unix.MS_BIND | unix.MS_REC, ""},
		{l.Usr(), at("usr"), "", unix.MS_BIND | unix.MS_REC, ""},
		{"", at("usr"), "", unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, ""},
		{l.OEM(), at("usr/share/oem"), "", unix.MS_BIND, ""},
		{"proc", at("proc"), "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", at("sys"), "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", at("run"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755,size=64m"},
		{"tmpfs", at("tmp"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777,size=512m"},
	}
	if l.Libvirt != "" {
		// After the tmpfs on /run: the folder, not the socket, so that a
		// libvirtd restarted on the host is seen again.
		mounts = append(mounts, mnt{l.Libvirt, at("run/libvirt"), "", unix.MS_BIND, ""})
	}
	for _, m := range mounts {
		if m.src == l.Libvirt {
			if err := os.MkdirAll(m.dst, 0o755); err != nil {
				return fmt.Errorf("while making %s in the management node: %w", m.dst, err)
			}
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("while mounting %s on %s in the management node: %w", m.src, m.dst, err)
		}
	}
	if err := makeDev(at("dev")); err != nil {
		return err
	}
	if err := pivot(root); err != nil {
		return err
	}
	return syscall.Exec("/sbin/init", []string{"/sbin/init"}, []string{"TERM=linux"})
}

// pivot makes root the root of this mount namespace and drops the old one.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("while switching to the root file system %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("while detaching the host's file system: %w", err)
	}
	return unix.Chdir("/")
}

// makeDev mounts a minimal /dev, as container engines make one: the usual
// character devices, a private devpts for terminals and a /dev/shm. The
// host's disks and consoles are not there.
func makeDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("while mounting %s: %w", dev, err)
	}
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("while making /dev/%s: %w", n.name, err)
		}
		_ = unix.Chmod(filepath.Join(dev, n.name), 0o666) // past the umask
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("while mounting /dev/pts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("while mounting /dev/shm: %w", err)
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}
