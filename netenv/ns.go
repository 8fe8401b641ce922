package netenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamespaceDir is where named network namespaces live, as with `ip netns`.
const NamespaceDir = "/run/netns"

// NamespacePath is the bind-mount file of a named namespace.
func NamespacePath(name string) string { return filepath.Join(NamespaceDir, name) }

// NamespaceExists says whether a named namespace is mounted.
func NamespaceExists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(NamespacePath(name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// makeNamespaceDirShared prepares /run/netns the way `ip netns add` does: a
// shared mount point, so that unmounting a namespace there also unmounts the
// copies that private mount namespaces (the simulated management node) hold,
// and the namespace really goes away.
func makeNamespaceDirShared() error {
	if err := os.MkdirAll(NamespaceDir, 0o755); err != nil {
		return fmt.Errorf("while creating %s: %w", NamespaceDir, err)
	}
	err := unix.Mount("", NamespaceDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(NamespaceDir, NamespaceDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("while bind-mounting %s on itself: %w", NamespaceDir, err)
		}
		err = unix.Mount("", NamespaceDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("while making %s a shared mount: %w", NamespaceDir, err)
	}
	return nil
}

// createNamespace makes a named network namespace with its loopback up.
func createNamespace(name string) error {
	if err := makeNamespaceDirShared(); err != nil {
		return err
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("while reading the current network namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name) // switches this thread into the new namespace
	if err == nil {
		h.Close()
	}
	if serr := netns.Set(orig); serr != nil {
		// This thread is stuck in the wrong namespace: keep it locked so the
		// runtime discards it instead of reusing it.
		return fmt.Errorf("while returning from namespace %s: %w", name, serr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("while creating network namespace %s: %w", name, err)
	}
	return Do(name, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
}

// deleteNamespace unmounts and removes a named namespace; a missing one is fine.
func deleteNamespace(name string) error {
	p := NamespacePath(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("while unmounting network namespace %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("while removing network namespace %s: %w", name, err)
	}
	return nil
}

// Do runs fn on an OS thread that is inside the named network namespace
// (the root namespace when name is ""). Sockets fn opens stay in that
// namespace after Do returns, which is how tests bind servers inside it.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	target, err := netns.GetFromPath(NamespacePath(name))
	if err != nil {
		return fmt.Errorf("while opening network namespace %s: %w", name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away if it cannot get back,
	// so no other goroutine ever runs in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("while reading the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("while entering network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("while leaving network namespace %s: %w", name, err))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// handle returns a netlink handle for a namespace ("" = root).
func handle(ns string) (*netlink.Handle, error) {
	if ns == "" {
		return netlink.NewHandle()
	}
	h, err := netns.GetFromPath(NamespacePath(ns))
	if err != nil {
		return nil, fmt.Errorf("while opening network namespace %s: %w", ns, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("while opening netlink in namespace %s: %w", ns, err)
	}
	return nh, nil
}

// SetLinkUp is the cable fault setter: it sets interface name in namespace ns
// ("" = root) up or down, as pulling or plugging the cable would.
func SetLinkUp(ns, name string, up bool) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("while finding interface %s in namespace %q: %w", name, ns, err)
	}
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("while setting interface %s (namespace %q) up=%v: %w", name, ns, up, err)
	}
	return nil
}

// Command returns a command that runs inside the named network namespace,
// through `ip netns exec` (which also gives it a /sys of that namespace).
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}
