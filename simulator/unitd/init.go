package unitd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// baselayout holds the files the OS image brings for /etc; the first boot
// copies the missing ones, as Flatcar's tmpfiles rules do.
const baselayout = "/usr/share/baselayout"

// RunInit is the node's PID 1: it prepares /etc and /run the way the OS's
// early boot does, opens the control socket, starts the enabled units and
// then supervises them; SIGTERM (or SIGINT) stops every unit and returns,
// which ends the node's PID namespace.
func RunInit(console io.Writer) error {
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				a.Value = slog.StringValue(a.Value.Time().UTC().Format("15:04:05.000"))
			}
			return a
		}})).With("pid1", "unitd")
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	sigchld := make(chan os.Signal, 16)
	signal.Notify(sigchld, syscall.SIGCHLD)

	if err := earlyBoot(log); err != nil {
		return err
	}
	m := NewManager("/", log)
	m.ReapAll = true
	stopReap := make(chan struct{})
	go m.reapAll(sigchld, stopReap)

	ln, err := ListenControl("/")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := m.ServeControl(ctx, ln); err != nil {
			log.Error("control socket", "err", err)
		}
	}()
	log.Info("booted; starting enabled units")
	for _, err := range m.StartWanted(ctx) {
		log.Error("unit failed to start", "err", err)
	}
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	ln.Close()
	m.StopAll(context.Background())
	close(stopReap)
	log.Info("every unit stopped; powering off")
	return nil
}

// earlyBoot does what the OS does before its service manager runs units:
// /etc from the image's baselayout where missing, a machine ID, the
// hostname from /etc/hostname, and /run/systemd/system, which tells
// programs (sd_booted) that a service manager runs.
func earlyBoot(log *slog.Logger) error {
	entries, err := os.ReadDir(baselayout)
	if err != nil {
		return fmt.Errorf("while reading the image's %s: %w", baselayout, err)
	}
	for _, e := range entries {
		dst := filepath.Join("/etc", e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := copyTree(filepath.Join(baselayout, e.Name()), dst); err != nil {
			return fmt.Errorf("while populating /etc: %w", err)
		}
	}
	if _, err := os.Lstat("/etc/os-release"); err != nil {
		_ = os.Symlink("../usr/lib/os-release", "/etc/os-release")
	}
	if b, err := os.ReadFile("/etc/machine-id"); err != nil || len(strings.TrimSpace(string(b))) != 32 {
		id := make([]byte, 16)
		rand.Read(id)
		if err := os.WriteFile("/etc/machine-id", []byte(hex.EncodeToString(id)+"\n"), 0o444); err != nil {
			return fmt.Errorf("while writing /etc/machine-id: %w", err)
		}
	}
	host := "localhost"
	if b, err := os.ReadFile("/etc/hostname"); err == nil && strings.TrimSpace(string(b)) != "" {
		host = strings.TrimSpace(string(b))
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		log.Warn("could not set the hostname", "hostname", host, "err", err)
	}
	for _, d := range []string{"/run/systemd/system", "/var/log", "/etc/systemd/system"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("while creating %s: %w", d, err)
		}
	}
	log.Info("early boot done", "hostname", host)
	return nil
}

// copyTree copies a file, symlink or folder (recursively).
func copyTree(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(t, dst)
	case st.IsDir():
		if err := os.MkdirAll(dst, st.Mode().Perm()); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}
