package rack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/vm"
)

// Up builds the rack described by c, or completes and restarts an existing
// one (idempotent): networks, VMs, the OEM folder, vBMCs, the management
// node, Racker installed there from its installer image, and racker serve
// answering /healthz.
// The rack's state is saved before anything is made, so Down can always
// clean up, even after a failed Up.
func Up(ctx context.Context, c Config, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The rack's daemons (vBMCs, the management node) outlive this process:
	// they must not inherit its other open files, such as the lock file
	// `flock LOCK racker-sim up` holds, which they would hold for as long
	// as the rack is up.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return nil, fmt.Errorf("while keeping this process's files from the rack's daemons: %w", err)
	}
	asked := c.Nodes
	if err := c.complete(); err != nil {
		return nil, err
	}
	if err := c.checkImages(); err != nil {
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
	if err := writeOEM(s); err != nil {
		return s, err
	}
	if err := startVBMCs(s, c, log); err != nil {
		return s, err
	}
	if err := bootMgmt(ctx, s, c, log); err != nil {
		return s, err
	}
	changed, err := configureMgmt(s, c)
	if err != nil {
		return s, err
	}
	if err := installRacker(ctx, s, c, changed, log); err != nil {
		return s, err
	}
	if err := waitServing(ctx, s, 60*time.Second); err != nil {
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

// writeOEM fills the management node's OEM partition: nodes.csv with the
// VMs' MACs and the BMC credentials (generated once, mode 0600).
func writeOEM(s *State) error {
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
	return nil
}

// startVBMCs starts the virtual BMCs that are not running, one per server
// inside its BMC namespace.
func startVBMCs(s *State, c Config, log *slog.Logger) error {
	if c.SimBinary == "" {
		return errors.New("rack: no racker-sim executable to run the vBMCs and the management node with")
	}
	if s.NoBMC {
		return nil
	}
	for _, mc := range s.Machines[1:] {
		role := "vbmc " + mc.Name
		if slices.ContainsFunc(s.Processes, func(p Process) bool { return p.Role == role && p.Alive() }) {
			continue
		}
		argv := []string{"ip", "netns", "exec", s.BMCNamespace(mc.Name), c.SimBinary, "vbmc", "--name", s.Name, "--dir", s.Dir, mc.Name}
		p, err := startBackground(role, argv, filepath.Join(s.machineDir(mc.Name), "vbmc.log"))
		if err != nil {
			return err
		}
		log.Info("virtual BMC started", "node", mc.Name, "bmc_mac", mc.BMCMAC, "pid", p.PID)
		s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Role == role })
		s.Processes = append(s.Processes, p)
		if err := s.save(); err != nil {
			return err
		}
	}
	return nil
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
