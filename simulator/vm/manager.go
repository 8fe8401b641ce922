package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// QEMULogDir is where libvirtd writes each domain's QEMU log (NAME.log).
const QEMULogDir = "/var/log/libvirt/qemu"

// Socket is libvirtd's API socket (qemu:///system).
const Socket = "/var/run/libvirt/libvirt-sock"

// Manager defines, starts, stops and removes the simulator's domains over one
// libvirt connection.
type Manager struct {
	l   *libvirt.Libvirt
	log *slog.Logger
}

// Connect dials libvirtd, starting libvirtd and virtlogd first on a machine
// without systemd (CI containers, laptops in a chroot) when the socket is
// missing.
func Connect(ctx context.Context, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := EnsureDaemons(ctx, log); err != nil {
		return nil, err
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(Socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.Connect(); err != nil {
		return nil, fmt.Errorf("while connecting to libvirtd at %s: %w", Socket, err)
	}
	return &Manager{l: l, log: log}, nil
}

// Close ends the libvirt connection.
func (m *Manager) Close() error { return m.l.Disconnect() }

// EnsureDaemons starts virtlogd and libvirtd (daemonised) if their sockets
// are missing, and waits for libvirtd's socket.
func EnsureDaemons(ctx context.Context, log *slog.Logger) error {
	fixKVMNode(log)
	for _, d := range []struct{ bin, sock string }{
		{"virtlogd", "/var/run/libvirt/virtlogd-sock"},
		{"libvirtd", Socket},
	} {
		if alive(d.sock) {
			continue
		}
		log.Info("starting daemon", "daemon", d.bin)
		out, err := exec.CommandContext(ctx, d.bin, "-d").CombinedOutput()
		if err != nil {
			return fmt.Errorf("while starting %s -d: %w: %s", d.bin, err, strings.TrimSpace(string(out)))
		}
		for i := 0; !alive(d.sock); i++ {
			if i > 100 {
				return fmt.Errorf("%s started but its socket %s did not appear in 10 s", d.bin, d.sock)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// fixKVMNode gives /dev/kvm the owner and mode udev gives it on Debian
// (root:kvm 0660) when, on a machine without udev, it is root-only. libvirt
// probes QEMU as root but checks KVM access as the libvirt-qemu user (group
// kvm); when the two disagree it throws its capabilities cache away on every
// call, and each domain define or start re-probes QEMU: 40–60 s under load
// instead of 1 s. Domains stay type qemu (TCG) either way.
func fixKVMNode(log *slog.Logger) {
	const dev = "/dev/kvm"
	st, err := os.Stat(dev)
	if err != nil || st.Mode().Perm()&0o060 != 0 {
		return
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return
	}
	if err := os.Chown(dev, 0, gid); err != nil {
		log.Warn("cannot give /dev/kvm to group kvm; libvirt will re-probe QEMU on every call", "err", err)
		return
	}
	if err := os.Chmod(dev, 0o660); err != nil {
		log.Warn("cannot make /dev/kvm group-accessible; libvirt will re-probe QEMU on every call", "err", err)
		return
	}
	log.Info("gave /dev/kvm udev's usual root:kvm 0660 so libvirt keeps its QEMU capabilities cache")
}

// alive says whether something accepts connections on a unix socket (a
// stale socket file of a dead daemon does not count).
func alive(sock string) bool {
	c, err := dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(time.Second)).Dial()
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Define creates the VM's files (blank qcow2 disks, a copy of the OVMF vars)
// if they are missing and defines the domain. A domain that exists already is
// left as it is (idempotent `racker-sim up`).
func (m *Manager) Define(ctx context.Context, s Spec) (Files, error) {
	s = s.withDefaults()
	x, err := DomainXML(s)
	if err != nil {
		return Files{}, err
	}
	f := FilesOf(s)
	if _, err := m.l.DomainLookupByName(s.Name); err == nil {
		return f, nil
	} else if !libvirt.IsNotFound(err) {
		return f, fmt.Errorf("while looking up domain %s: %w", s.Name, err)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return f, fmt.Errorf("while creating the folder of VM %s: %w", s.Name, err)
	}
	for i, d := range f.Disks {
		if _, err := os.Stat(d); err == nil {
			continue
		}
		out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", d, s.Disks[i]).CombinedOutput()
		if err != nil {
			return f, fmt.Errorf("while creating disk %s of VM %s: %w: %s", d, s.Name, err, strings.TrimSpace(string(out)))
		}
	}
	if f.NVRAM != "" {
		if _, err := os.Stat(f.NVRAM); err != nil {
			if err := copyFile(OVMFVars, f.NVRAM); err != nil {
				return f, fmt.Errorf("while copying the OVMF vars for VM %s: %w", s.Name, err)
			}
		}
	}
	if _, err := m.l.DomainDefineXML(x); err != nil {
		return f, fmt.Errorf("while defining domain %s: %w", s.Name, err)
	}
	m.log.Debug("vm: domain defined", "domain", s.Name, "firmware", s.Firmware)
	return f, nil
}

// Start powers a domain on.
func (m *Manager) Start(name string) error {
	d, err := m.l.DomainLookupByName(name)
	if err != nil {
		return fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	if err := m.l.DomainCreate(d); err != nil {
		return fmt.Errorf("while starting domain %s: %w", name, err)
	}
	return nil
}

// Stop powers a domain off at once (pulling the plug); one already off is fine.
func (m *Manager) Stop(name string) error {
	d, err := m.l.DomainLookupByName(name)
	if err != nil {
		return fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	if err := m.l.DomainDestroy(d); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
		return fmt.Errorf("while stopping domain %s: %w", name, err)
	}
	return nil
}

// Remove stops and undefines a domain with its NVRAM; a missing domain is
// fine. The VM's folder is the caller's to delete.
func (m *Manager) Remove(name string) error {
	d, err := m.l.DomainLookupByName(name)
	if libvirt.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	if err := m.l.DomainDestroy(d); err != nil && !isCode(err, libvirt.ErrOperationInvalid) && !libvirt.IsNotFound(err) {
		return fmt.Errorf("while stopping domain %s: %w", name, err)
	}
	if err := m.l.DomainUndefineFlags(d, libvirt.DomainUndefineNvram); err != nil && !libvirt.IsNotFound(err) {
		return fmt.Errorf("while undefining domain %s: %w", name, err)
	}
	// libvirt's own per-domain QEMU log is ours too: a removed VM leaves no file.
	_ = os.Remove(filepath.Join(QEMULogDir, name+".log"))
	m.log.Debug("vm: domain removed", "domain", name)
	return nil
}

// State is a domain's state as libvirt names it: "running", "shut off", …
// and "absent" when there is no such domain.
func (m *Manager) State(name string) (string, error) {
	d, err := m.l.DomainLookupByName(name)
	if libvirt.IsNotFound(err) {
		return "absent", nil
	}
	if err != nil {
		return "", fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	st, _, err := m.l.DomainGetState(d, 0)
	if err != nil {
		return "", fmt.Errorf("while reading the state of domain %s: %w", name, err)
	}
	return stateName(libvirt.DomainState(st)), nil
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutting down"
	case libvirt.DomainShutoff:
		return "shut off"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended"
	}
	return "unknown"
}

// Domains lists the names of defined domains that start with prefix.
func (m *Manager) Domains(prefix string) ([]string, error) {
	ds, _, err := m.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("while listing libvirt domains: %w", err)
	}
	var out []string
	for _, d := range ds {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

// SetLink plugs or pulls the cable of the NIC with mac (the guest sees the
// carrier change), live when the domain runs and in its definition either
// way, so the fault survives a power cycle.
func (m *Manager) SetLink(name, mac, bridge string, up bool) error {
	d, err := m.l.DomainLookupByName(name)
	if err != nil {
		return fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	state := "down"
	if up {
		state = "up"
	}
	dev := fmt.Sprintf("<interface type='bridge'><mac address='%s'/><source bridge='%s'/><model type='virtio'/><link state='%s'/></interface>", esc(mac), esc(bridge), state)
	flags := libvirt.DomainDeviceModifyConfig
	if st, _, err := m.l.DomainGetState(d, 0); err == nil && libvirt.DomainState(st) == libvirt.DomainRunning {
		flags |= libvirt.DomainDeviceModifyLive
	}
	if err := m.l.DomainUpdateDeviceFlags(d, dev, flags); err != nil {
		return fmt.Errorf("while setting the link of %s on domain %s %s: %w", mac, name, state, err)
	}
	return nil
}

// XML returns the domain's current definition (tests check conventions on it).
func (m *Manager) XML(name string) (string, error) {
	d, err := m.l.DomainLookupByName(name)
	if err != nil {
		return "", fmt.Errorf("while looking up domain %s: %w", name, err)
	}
	x, err := m.l.DomainGetXMLDesc(d, libvirt.DomainXMLInactive)
	if err != nil {
		return "", fmt.Errorf("while reading the XML of domain %s: %w", name, err)
	}
	return x, nil
}

func isCode(err error, code libvirt.ErrorNumber) bool {
	var e libvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}
