package rack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/vm"
)

// Up builds the rack described by c, or completes and restarts an existing
// one (idempotent): networks, VMs, OEM folder, Racker, vBMCs, racker serve.
// The rack's state is saved before anything is made, so Down can always
// clean up, even after a failed Up.
func Up(ctx context.Context, c Config, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	asked := c.Nodes
	if err := c.complete(); err != nil {
		return nil, err
	}
	s, err := Load(c.Dir)
	switch {
	case errors.Is(err, ErrNoRack):
		if s, err = newState(c); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if asked != 0 && c.NodesCSV == "" && asked != len(s.Machines)-1 {
			return nil, fmt.Errorf("rack %s exists with %d servers, not %d: take it down first (racker-sim down)", s.Name, len(s.Machines)-1, asked)
		}
		log.Info("rack exists; completing it", "name", s.Name, "dir", s.Dir)
	}
	disks, err := ParseDisks(c.Disks, nodeTypes(s.Machines))
	if err != nil {
		return nil, err
	}
	if err := s.save(); err != nil {
		return nil, err
	}

	m, err := vm.Connect(ctx, log)
	if err != nil {
		return s, err
	}
	defer m.Close()

	if _, err := os.Stat(s.netRecord()); errors.Is(err, os.ErrNotExist) {
		pub := netip.MustParsePrefix(s.PublicSubnet)
		if _, err := netenv.Create(topology(s.Name, s.Machines, pub, !s.NoBMC), s.netRecord(), log); err != nil {
			return s, fmt.Errorf("while building the rack networks: %w", err)
		}
	}
	names := netenv.Names{Instance: s.Name}
	for _, mc := range s.Machines[1:] {
		spec := vm.Spec{
			Name: s.Domain(mc.Name), Firmware: vm.Firmware(mc.Firmware), Disks: disks.For(mc.Type), MemoryMiB: c.MemoryMiB,
			PrimaryMAC: mustMAC(mc.PrimaryMAC), SecondaryMAC: mustMAC(mc.SecondaryMAC),
			InternalBridge: names.Bridge("int"), PublicBridge: names.Bridge("pub"),
			PrimaryTap: names.Iface(mc.Name, "i"), SecondaryTap: names.Iface(mc.Name, "p"),
			Dir: s.machineDir(mc.Name), NetworkFirst: true,
		}
		if _, err := m.Define(ctx, spec); err != nil {
			return s, err
		}
	}
	if err := writeMgmtFiles(s, c); err != nil {
		return s, err
	}
	if err := startDaemons(ctx, s, c, log); err != nil {
		return s, err
	}
	s.Built = true
	return s, s.save()
}

func newState(c Config) (*State, error) {
	ms, err := planMachines(c)
	if err != nil {
		return nil, err
	}
	var routed []netip.Prefix
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("while reading the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if p, ok := netipPrefix(r.Dst); ok && p.Bits() > 0 {
				routed = append(routed, p)
			}
		}
	}
	pub, err := publicSubnet(c.Name, routed)
	if err != nil {
		return nil, err
	}
	return &State{Name: c.Name, Dir: c.Dir, OS: c.OS, NoBMC: c.NoBMC, PublicSubnet: pub.String(), Machines: ms}, nil
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// writeMgmtFiles fills the management node's folders: the OEM folder
// (nodes.csv with the VMs' MACs, BMC credentials generated once, mode 0600)
// and /opt with Racker installed in /opt/racker and linked from /opt/bin.
func writeMgmtFiles(s *State, c Config) error {
	if err := os.MkdirAll(s.OEMDir(), 0o755); err != nil {
		return fmt.Errorf("while creating the OEM folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.OEMDir(), "nodes.csv"), []byte(nodesCSV(s.Machines)), 0o644); err != nil {
		return fmt.Errorf("while writing nodes.csv: %w", err)
	}
	creds := map[string]func() string{
		"ipmi_user": func() string { return "racker" },
		// IPMI 2.0 passwords are at most 20 bytes: 16 hex digits.
		"ipmi_password": func() string { b := make([]byte, 8); rand.Read(b); return hex.EncodeToString(b) },
	}
	for f, gen := range creds {
		p := filepath.Join(s.OEMDir(), f)
		if _, err := os.Stat(p); err == nil {
			continue // keep the credentials the vBMCs already use
		}
		if err := os.WriteFile(p, []byte(gen()+"\n"), 0o600); err != nil {
			return fmt.Errorf("while writing %s: %w", f, err)
		}
	}
	for _, d := range []string{"racker-state", "racker", "bin"} {
		if err := os.MkdirAll(filepath.Join(s.OptDir(), d), 0o755); err != nil {
			return fmt.Errorf("while creating the management node's /opt/%s: %w", d, err)
		}
	}
	if c.RackerBinary != "" {
		if _, err := os.Stat(c.RackerBinary); err == nil {
			if err := copyExecutable(c.RackerBinary, filepath.Join(s.OptDir(), "racker", "racker")); err != nil {
				return err
			}
			link := filepath.Join(s.OptDir(), "bin", "racker")
			_ = os.Remove(link)
			if err := os.Symlink("/opt/racker/racker", link); err != nil {
				return fmt.Errorf("while linking /opt/bin/racker: %w", err)
			}
		}
	}
	return nil
}

// startDaemons starts what is not running: one vBMC per server (inside its
// BMC namespace) and racker serve inside the management node.
func startDaemons(ctx context.Context, s *State, c Config, log *slog.Logger) error {
	alive := func(role string) bool {
		return slices.ContainsFunc(s.Processes, func(p Process) bool { return p.Role == role && p.Alive() })
	}
	record := func(p Process) error {
		s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Role == p.Role })
		s.Processes = append(s.Processes, p)
		return s.save()
	}
	if c.SimBinary == "" {
		return errors.New("rack: no racker-sim executable to run the vBMCs and the management node with")
	}
	if !s.NoBMC {
		for _, mc := range s.Machines[1:] {
			role := "vbmc " + mc.Name
			if alive(role) {
				continue
			}
			argv := []string{"ip", "netns", "exec", s.BMCNamespace(mc.Name), c.SimBinary, "vbmc", "--name", s.Name, "--dir", s.Dir, mc.Name}
			p, err := startBackground(role, argv, filepath.Join(s.machineDir(mc.Name), "vbmc.log"))
			if err != nil {
				return err
			}
			log.Info("virtual BMC started", "node", mc.Name, "bmc_mac", mc.BMCMAC, "pid", p.PID)
			if err := record(p); err != nil {
				return err
			}
		}
	}
	racker := filepath.Join(s.OptDir(), "racker", "racker")
	if alive("racker serve") {
		return nil
	}
	if err := exec.CommandContext(ctx, racker, "serve", "--help").Run(); err != nil {
		log.Warn("racker serve is not available; the management node runs no boot services", "racker", racker, "err", err)
		return nil
	}
	argv := []string{c.SimBinary, "exec", "--name", s.Name, "--dir", s.Dir, "--", "racker", "serve", "--os", s.OS}
	if s.OS == "testos" && c.TestOSDir != "" {
		abs, err := filepath.Abs(c.TestOSDir)
		if err != nil {
			return err
		}
		argv = append(argv, "--testos-dir", abs)
	}
	p, err := startBackground("racker serve", argv, filepath.Join(s.MgmtDir(), "racker-serve.log"))
	if err != nil {
		return err
	}
	log.Info("racker serve started in the management node", "pid", p.PID, "log", p.Log)
	if err := record(p); err != nil {
		return err
	}
	return waitServing(ctx, p, 60*time.Second)
}

// waitServing waits until racker serve says its boot services run, so a
// rack that `up` reports ready answers DHCP and HTTP at once (a bootstrap
// typed right after up must find it, not start its own).
func waitServing(ctx context.Context, p Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.Log)
		if bytes.Contains(b, []byte("boot services running")) {
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("racker serve in the management node stopped; its log %s:\n%s", p.Log, b)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("racker serve in the management node is not serving after %s; its log: %s", timeout, p.Log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Down removes everything the rack in dir made: processes, domains,
// networks and the folder. A rack that is half built (or already half
// removed) is fine; errors are collected and the rest still removed.
func Down(ctx context.Context, dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := Load(dir)
	if errors.Is(err, ErrNoRack) {
		// Maybe a crash before the state was written: the network record
		// alone still says what to remove.
		if err := netenv.TeardownRecord(filepath.Join(dir, "net.json"), log); err != nil {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range s.Processes {
		if err := p.kill(5 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	s.Processes = nil
	m, err := vm.Connect(ctx, log)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, mc := range s.Machines[1:] {
			if err := m.Remove(s.Domain(mc.Name)); err != nil {
				errs = append(errs, err)
			}
		}
		m.Close()
	}
	if err := netenv.TeardownRecord(s.netRecord(), log); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		_ = s.save()
		return fmt.Errorf("while taking rack %s down: %w", s.Name, errors.Join(errs...))
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("while removing the rack folder %s: %w", s.Dir, err)
	}
	_ = os.Remove(filepath.Dir(s.Dir)) // the parent, when no other rack is in it
	log.Info("rack removed", "name", s.Name)
	return nil
}
