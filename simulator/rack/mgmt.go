package rack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/mgmtnode"
	"github.com/racker/racker/simulator/vm"
)

// The management node is a process of the rack: its PID 1.
const roleMgmt = "mgmt node"

// ServeUnit is Racker's unit on the management node, and ServePort the
// HTTP port its boot services answer on (Racker's default).
const (
	ServeUnit = "racker-serve.service"
	ServePort = 8080
)

// simDropIn is the drop-in racker-sim writes as the rack's operator: with
// --os testos, racker serve offers the simulator's test OS (whose release
// folder is copied into the node as Racker's test OS mirror) instead of
// Flatcar, which cannot be downloaded here.
const simDropIn = "/etc/systemd/system/" + ServeUnit + ".d/10-racker-sim.conf"

// TestOSMirror is where the test OS release is copied in the node: the
// default of racker serve's --testos-dir (INSTALL-DIR/testos), version
// folder "current".
const TestOSMirror = "/opt/racker/testos/current"

// Node is the management node's layout on the host. In laptop mode
// (--no-bmc) the node stands in for the laptop that runs libvirtd: it
// gets the host's libvirt socket folder, so that racker --bmc-driver
// libvirt reaches the domains there as it would on the laptop.
func (s *State) Node() mgmtnode.Layout {
	l := mgmtnode.Layout{Dir: s.MgmtDir()}
	if s.NoBMC {
		l.Libvirt = vm.SocketDir
	}
	return l
}

// mgmtPID is the management node's PID 1 as the host sees it, or an error
// saying the node is not running.
func (s *State) mgmtPID() (int, error) {
	for _, p := range s.Processes {
		if p.Role == roleMgmt && p.Alive() {
			return p.PID, nil
		}
	}
	return 0, fmt.Errorf("the management node of rack %s is not running (racker-sim up boots it)", s.Name)
}

// EnterMgmt replaces the calling process with argv running inside the
// management node, as a login there would run it. It returns only on
// failure.
func EnterMgmt(s *State, argv []string) error {
	pid, err := s.mgmtPID()
	if err != nil {
		return err
	}
	return mgmtnode.Exec(pid, argv)
}

// MgmtCommand is a command that runs argv inside the management node.
func MgmtCommand(ctx context.Context, s *State, argv ...string) (*exec.Cmd, error) {
	pid, err := s.mgmtPID()
	if err != nil {
		return nil, err
	}
	return mgmtnode.Command(ctx, pid, argv...), nil
}

// bootMgmt boots the management node when it is not running: its disks
// (from the OS image c.MgmtOS), then its PID 1 in new namespaces inside
// the management network namespace; it returns once the node's service
// manager answers.
func bootMgmt(ctx context.Context, s *State, c Config, log *slog.Logger) error {
	node := s.Node()
	if _, err := s.mgmtPID(); err == nil {
		if !mgmtnode.UsrCurrent(node, c.MgmtOS) {
			log.Warn("the management node runs an older OS image; take the rack down and up again to boot the new one", "image", c.MgmtOS)
		}
		return nil
	}
	if err := mgmtnode.Prepare(node, c.MgmtOS); err != nil {
		return err
	}
	if err := os.WriteFile(node.Path("/etc/hostname"), []byte("mgmt\n"), 0o644); err != nil {
		return fmt.Errorf("while naming the management node: %w", err)
	}
	return bootMgmtRetrying(ctx, s, node, c, log)
}

// bootMgmtRetrying boots the prepared node. A node that ends before it has
// said anything on its console is booted once more (a CI run reported one
// within 30 ms of its start, most likely the /proc misreading that
// bootMgmtOnce no longer makes); how it ended is told either way, and a
// node that said why it stopped is not retried.
func bootMgmtRetrying(ctx context.Context, s *State, node mgmtnode.Layout, c Config, log *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		err := bootMgmtOnce(ctx, s, node, c, log)
		var silent *silentEnd
		if !errors.As(err, &silent) || attempt == 2 {
			return err
		}
		log.Warn("the management node ended before saying anything on its console; booting it again", "ended", silent.state)
	}
}

// silentEnd is a management node that ended with nothing on its console.
type silentEnd struct{ state, console string }

func (e *silentEnd) Error() string {
	return fmt.Sprintf("the management node ended (%s) before writing anything on its console (%s)", e.state, e.console)
}

func bootMgmtOnce(ctx context.Context, s *State, node mgmtnode.Layout, c Config, log *slog.Logger) error {
	before := fileSize(node.Console())
	proc, ended, err := mgmtnode.Boot(node, netenv.NamespacePath(s.MgmtNamespace()), c.SimBinary)
	if err != nil {
		return err
	}
	p := Process{Role: roleMgmt, PID: proc.Pid, Start: procStart(proc.Pid), Log: node.Console()}
	s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Role == roleMgmt })
	s.Processes = append(s.Processes, p)
	if err := s.save(); err != nil {
		return err
	}
	log.Info("management node booted", "pid", p.PID, "console", p.Log)
	// unitd listens once it has started the enabled units.
	sock := filepath.Join("/proc", fmt.Sprint(p.PID), "root", "run/unitd/control.sock")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		// Whether it ended is the reaper's word, not /proc's: a node seen
		// as gone by /proc while it ran (CI, once: its init had started)
		// was a reading taken mid-exec.
		how := ""
		select {
		case st := <-ended:
			how = st.String()
		default:
			if time.Now().After(deadline) {
				how = "still running"
			}
		}
		if how != "" {
			if how != "still running" && fileSize(node.Console()) == before {
				return &silentEnd{state: how, console: node.Console()}
			}
			b, _ := os.ReadFile(node.Console())
			return fmt.Errorf("the management node did not come up (%s); its console (%s):\n%s", how, node.Console(), tail(b, 3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fileSize is the size of the file at path, 0 when it is not there.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// configureMgmt does what the rack's operator does on the management node
// before installing Racker: the test OS mirror and the drop-in that makes
// racker serve offer it (--os testos). It says whether the drop-in changed.
func configureMgmt(s *State, c Config) (bool, error) {
	node := s.Node()
	want := []byte{}
	if s.OS == "testos" {
		if c.TestOSDir == "" {
			return false, errors.New("--os testos needs the test OS (make testos builds bin/testos; --testos-dir names it)")
		}
		src := filepath.Join(c.TestOSDir, "current")
		if err := mgmtnode.SyncTree(src, node.Path(TestOSMirror)); err != nil {
			return false, fmt.Errorf("while copying the test OS %s into the management node (make testos builds it): %w", src, err)
		}
		want = []byte("# Written by racker-sim, as the rack's operator: this rack installs the\n" +
			"# simulator's test OS, mirrored in " + filepath.Dir(TestOSMirror) + ".\n" +
			"[Service]\nExecStart=\nExecStart=/opt/bin/racker serve --log-format json --os testos\n")
	}
	p := node.Path(simDropIn)
	have, err := os.ReadFile(p)
	switch {
	case err == nil && bytes.Equal(have, want) && len(want) > 0:
		return false, nil
	case len(want) == 0:
		return err == nil && os.Remove(p) == nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return false, err
	}
	return true, os.WriteFile(p, want, 0o644)
}

// installRacker runs the installer image in the management node, as an
// operator types `docker run --rm --privileged --pid host IMAGE` there,
// unless that very image was installed before. A changed drop-in alone is
// applied with daemon-reload and a restart, as an operator would.
func installRacker(ctx context.Context, s *State, c Config, dropInChanged bool, log *slog.Logger) error {
	digest, err := mgmtnode.ArchiveDigest(c.RackerImage)
	if err != nil {
		return fmt.Errorf("the installer image %s: %w", c.RackerImage, err)
	}
	pid, err := s.mgmtPID()
	if err != nil {
		return err
	}
	_, installed := os.Stat(s.Node().Path("/opt/racker/current"))
	if digest == s.RackerImage && installed == nil {
		if dropInChanged {
			for _, argv := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "restart", ServeUnit}} {
				if out, err := mgmtnode.Command(ctx, pid, argv...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s in the management node: %w: %s", strings.Join(argv, " "), err, out)
				}
			}
		}
		return nil
	}
	logPath := filepath.Join(s.MgmtDir(), "installer.log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	var buf bytes.Buffer
	log.Info("installing Racker in the management node from its installer image", "image", c.RackerImage, "digest", digest)
	fmt.Fprintf(out, "$ docker run --rm --privileged --pid host %s  # %s\n", c.RackerImage, digest)
	if err := mgmtnode.RunImage(ctx, s.Node(), pid, c.RackerImage, c.SimBinary, io.MultiWriter(out, &buf)); err != nil {
		return fmt.Errorf("%w; its output:\n%s", err, buf.String())
	}
	log.Info("installer finished", "output", strings.TrimSpace(buf.String()))
	s.RackerImage = digest
	return s.save()
}

// waitServing waits until racker serve answers GET /healthz on the
// management node's internal address (which racker serve itself puts on
// the PXE interface), so a rack that `up` reports ready answers DHCP and
// HTTP at once.
func waitServing(ctx context.Context, s *State, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = netenv.Do(s.MgmtNamespace(), func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		for _, a := range internalAddrs(s) {
			resp, err := client.Get(fmt.Sprintf("http://%s/healthz", net.JoinHostPort(a, fmt.Sprint(ServePort))))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		if _, err := s.mgmtPID(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.Node().Path("/var/log/units/" + ServeUnit + ".log"))
			return fmt.Errorf("racker serve in the management node does not answer /healthz after %s; `racker-sim exec -- journalctl -u %s` shows:\n%s",
				timeout, ServeUnit, tail(b, 3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// internalAddrs are the IPv4 addresses on the management node's internal
// NIC.
func internalAddrs(s *State) []string {
	var out []string
	_ = netenv.Do(s.MgmtNamespace(), func() error {
		l, err := netlink.LinkByName(MgmtSecondaryIface)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			out = append(out, a.IP.String())
		}
		return err
	})
	return out
}

// serveState is racker-serve's state as the node's systemctl reports it.
func serveState(ctx context.Context, s *State) string {
	cmd, err := MgmtCommand(ctx, s, "systemctl", "is-active", ServeUnit)
	if err != nil {
		return "stopped" // the node itself is not running
	}
	out, _ := cmd.Output()
	st := strings.TrimSpace(string(out))
	if st == "active" {
		return "running"
	}
	if st == "" {
		return "unknown"
	}
	return st
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
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
