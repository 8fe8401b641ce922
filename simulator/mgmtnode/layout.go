// Package mgmtnode runs the simulated management node: a machine shaped
// like a Flatcar host, made of Linux namespaces instead of a VM so that
// `racker-sim up` stays fast.
//
// The node has its own disks, as folders of the rack: a read-only /usr
// (the OS image scripts/build-mgmtos.sh builds: Debian's programs of the
// kinds Flatcar ships, and unitd as its service manager), a writable root
// for /etc, /opt, /var, /home and /root, and the OEM partition on
// /usr/share/oem. It runs in its own mount, PID, UTS and IPC namespaces,
// inside the rack's management network namespace, with unitd as PID 1.
// Nothing of the host's file system is visible inside.
//
// Racker reaches the node only as it reaches a real one: RunImage runs its
// installer image the way `docker run --rm --privileged --pid host IMAGE`
// does on Flatcar, and Exec and Command enter the node like an SSH session.
package mgmtnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Layout is where the node's disks live on the host.
type Layout struct {
	Dir string // the node's folder in the rack (RACKDIR/mgmt)
}

// Root is the node's root file system (Flatcar's ROOT partition):
// /etc, /opt, /var, /home, /root and the mount points.
func (l Layout) Root() string { return filepath.Join(l.Dir, "root") }

// Usr is the node's /usr (Flatcar's USR-A), mounted read-only.
func (l Layout) Usr() string { return filepath.Join(l.Dir, "usr") }

// OEM is the node's OEM partition, mounted on /usr/share/oem.
func (l Layout) OEM() string { return filepath.Join(l.Dir, "oem") }

// Console is what the node's PID 1 prints (its console).
func (l Layout) Console() string { return filepath.Join(l.Dir, "console.log") }

// Path is a path inside the node, as seen from the host.
func (l Layout) Path(p string) string { return filepath.Join(l.Root(), p) }

// containers is where the node's container engine keeps containers.
func (l Layout) containers() string { return l.Path("/var/lib/containers/racker-sim") }

// usrStamp records which OS image build Usr holds.
func (l Layout) usrStamp() string { return filepath.Join(l.Dir, "usr.stamp") }

// Flatcar's merged-/usr links at the root.
var rootLinks = map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

// Prepare makes the node's disks: the root file system's skeleton (kept
// across ups, like a disk), the OEM folder, and /usr from image (the
// folder build-mgmtos.sh writes: image/usr and image/.stamp), copied only
// when the build changed. The node must not be running: its /usr is
// replaced underneath.
func Prepare(l Layout, image string) error {
	stamp, err := os.ReadFile(filepath.Join(image, ".stamp"))
	if err != nil {
		return fmt.Errorf("the management node's OS image %s is missing or incomplete (make mgmtos builds it): %w", image, err)
	}
	if have, err := os.ReadFile(l.usrStamp()); err != nil || string(have) != string(stamp) {
		tmp := l.Usr() + ".new"
		os.RemoveAll(tmp)
		if err := copyTree(filepath.Join(image, "usr"), tmp); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("while copying the OS image %s into the management node: %w", image, err)
		}
		os.RemoveAll(l.Usr())
		if err := os.Rename(tmp, l.Usr()); err != nil {
			return fmt.Errorf("while installing the management node's /usr: %w", err)
		}
		if err := os.WriteFile(l.usrStamp(), stamp, 0o644); err != nil {
			return err
		}
	}
	root := l.Root()
	dirs := map[string]os.FileMode{"etc": 0o755, "opt": 0o755, "var": 0o755, "home": 0o755, "root": 0o700,
		"usr": 0o755, "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "tmp": 0o1777, "mnt": 0o755, "media": 0o755}
	for d, mode := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), mode); err != nil {
			return fmt.Errorf("while making the management node's root file system: %w", err)
		}
	}
	for name, target := range rootLinks {
		p := filepath.Join(root, name)
		if t, err := os.Readlink(p); err == nil && t == target {
			continue
		}
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("while making the management node's root file system: %w", err)
		}
	}
	return os.MkdirAll(l.OEM(), 0o755)
}

// UsrCurrent says whether the node's /usr is the image's current build.
func UsrCurrent(l Layout, image string) bool {
	want, err1 := os.ReadFile(filepath.Join(image, ".stamp"))
	have, err2 := os.ReadFile(l.usrStamp())
	return err1 == nil && err2 == nil && string(want) == string(have)
}

// copyTree copies folders, regular files (with their modes) and symlinks.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, st os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case st.IsDir():
			return os.MkdirAll(out, st.Mode().Perm())
		case st.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case st.Mode().IsRegular():
			return copyFile(p, out, st.Mode().Perm())
		}
		return fmt.Errorf("%s: not a file, folder or symlink", p)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SyncTree makes dst an exact copy of src (files, modes, symlinks),
// copying only files whose size or modification time differ: how the
// simulator fills a folder of the node (the test OS mirror) on every up
// without rewriting tens of megabytes.
func SyncTree(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	err := filepath.Walk(src, func(p string, st os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case st.IsDir():
			return os.MkdirAll(out, st.Mode().Perm())
		case st.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if have, err := os.Readlink(out); err == nil && have == t {
				return nil
			}
			os.RemoveAll(out)
			return os.Symlink(t, out)
		case st.Mode().IsRegular():
			if have, err := os.Lstat(out); err == nil && have.Mode().IsRegular() && have.Size() == st.Size() && have.ModTime().Equal(st.ModTime()) {
				return nil
			}
			tmp := out + ".sync-tmp"
			if err := copyFile(p, tmp, st.Mode().Perm()); err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil {
				return err
			}
			return os.Rename(tmp, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Drop what src no longer has.
	return filepath.Walk(dst, func(p string, st os.FileInfo, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if _, err := os.Lstat(filepath.Join(src, rel)); errors.Is(err, os.ErrNotExist) && !strings.HasPrefix(rel, "..") {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if st.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
}
