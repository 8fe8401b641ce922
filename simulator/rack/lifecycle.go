package rack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/vm"
)

// A rack lives after `up`: the data-centre hands do to a running rack what
// Racker's lifecycle commands then deal with (racker bootstrap, replace,
// retire). Add cables new servers and writes their rows into nodes.csv, as
// the factory sheet for them would be; Replace swaps a server for a blank
// machine with new MACs and a new BMC (nodes.csv is left to racker replace,
// which is how an operator tells Racker); Remove takes a server out (its row
// is left to racker retire). Each records the change in state.json first,
// so Down always removes what exists.

// LifeConfig is what Add, Replace and Remove need beyond the rack's state.
type LifeConfig struct {
	Types     []string // node types of added servers, round-robin (default: the first server's)
	UEFITypes []string // added types that boot with OVMF (default: as servers of that type do)
	Disks     []string // --disks values for the new machines (ParseDisks)
	MemoryMiB int      // per VM (default 1024)
	SimBinary string   // racker-sim itself, for the vBMCs
}

var serverName = regexp.MustCompile(`^n([0-9]+)$`)

// nextIndex is a machine index no machine of the rack ever had: MACs are
// made from it (netenv.MAC), and a retired or replaced machine's MACs are
// refused by Racker, so an index is never used twice.
func (s *State) nextIndex() int {
	i := s.NextIndex
	for _, m := range s.Machines {
		if g := serverName.FindStringSubmatch(m.Name); g != nil {
			n, _ := strconv.Atoi(g[1])
			i = max(i, n+1)
		}
	}
	return max(i, 1)
}

// newMACs gives machine index i its three MACs, refusing ones the rack
// already uses (a rack built from a user's nodes.csv).
func (s *State) newMACs(i int) (primary, bmc, secondary string, err error) {
	if i > 250 {
		return "", "", "", fmt.Errorf("rack %s has used up its %d machine numbers: take it down and build it again", s.Name, 250)
	}
	primary, bmc, secondary = netenv.MAC(s.Name, i, 1).String(), netenv.MAC(s.Name, i, 2).String(), netenv.MAC(s.Name, i, 3).String()
	for _, m := range s.Machines {
		for _, mac := range []string{m.PrimaryMAC, m.BMCMAC, m.SecondaryMAC} {
			if slices.ContainsFunc([]string{primary, bmc, secondary}, func(x string) bool { return strings.EqualFold(x, mac) }) {
				return "", "", "", fmt.Errorf("the simulator's MAC %s for a new machine is used by %s already", mac, m.Name)
			}
		}
	}
	return primary, bmc, secondary, nil
}

// Add adds n servers to the running rack in dir: a VM each (powered off,
// blank disks), its BMC's namespace and vBMC, and a row each appended to
// the management node's nodes.csv. It returns the new machines.
func Add(ctx context.Context, dir string, n int, c LifeConfig, log *slog.Logger) ([]Machine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if n < 1 || n > 20 {
		return nil, fmt.Errorf("add %d servers: want 1–20 at a time", n)
	}
	s, err := loadBuilt(dir)
	if err != nil {
		return nil, err
	}
	if len(s.Machines)-1+n > 60 {
		return nil, fmt.Errorf("rack %s has %d servers; the simulator takes at most 60", s.Name, len(s.Machines)-1)
	}
	types := c.Types
	if len(types) == 0 {
		types = []string{s.Machines[len(s.Machines)-1].Type}
	}
	var added []Machine
	for k := range n {
		i := s.nextIndex()
		p, b, sec, err := s.newMACs(i)
		if err != nil {
			return added, err
		}
		t := types[k%len(types)]
		m := Machine{Name: fmt.Sprintf("n%d", i), Type: t, PrimaryMAC: p, BMCMAC: b, SecondaryMAC: sec, Firmware: s.firmwareOf(t, c.UEFITypes),
			Comments: fmt.Sprintf("simulated %s-n%d; added", s.Name, i)}
		s.Machines = append(s.Machines, m)
		s.NextIndex = i + 1
		if err := s.save(); err != nil {
			return added, err
		}
		if err := s.cable(ctx, m, c, log); err != nil {
			return added, err
		}
		if err := appendRow(s, m); err != nil {
			return added, err
		}
		log.Info("server added", "node", m.Name, "primary_mac", m.PrimaryMAC, "bmc_mac", m.BMCMAC, "type", m.Type)
		added = append(added, m)
	}
	return added, nil
}

// Replace swaps server node for a blank machine with new MACs and a new
// BMC (same name, slot and type), powered off. nodes.csv is not changed:
// racker replace tells Racker. It returns the old and the new machine.
func Replace(ctx context.Context, dir, node string, c LifeConfig, log *slog.Logger) (old, repl Machine, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := loadBuilt(dir)
	if err != nil {
		return old, repl, err
	}
	if old, err = s.server(node); err != nil {
		return old, repl, err
	}
	i := s.nextIndex()
	repl = old
	if repl.PrimaryMAC, repl.BMCMAC, repl.SecondaryMAC, err = s.newMACs(i); err != nil {
		return old, repl, err
	}
	if err := s.uncable(ctx, old, log); err != nil {
		return old, repl, err
	}
	s.Machines[slices.IndexFunc(s.Machines, func(m Machine) bool { return m.Name == old.Name })] = repl
	s.NextIndex = i + 1
	if err := s.save(); err != nil {
		return old, repl, err
	}
	if err := s.cable(ctx, repl, c, log); err != nil {
		return old, repl, err
	}
	log.Info("server replaced by a blank machine", "node", old.Name, "old_primary_mac", old.PrimaryMAC, "primary_mac", repl.PrimaryMAC, "bmc_mac", repl.BMCMAC)
	return old, repl, nil
}

// Remove takes server node out of the rack: its VM and disks, its vBMC
// and its BMC's namespace. nodes.csv is not changed: racker retire tells
// Racker. It returns the machine removed.
func Remove(ctx context.Context, dir, node string, log *slog.Logger) (Machine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := loadBuilt(dir)
	if err != nil {
		return Machine{}, err
	}
	m, err := s.server(node)
	if err != nil {
		return m, err
	}
	if len(s.Machines) == 2 {
		return m, fmt.Errorf("%s is the rack's last server: take the rack down instead (racker-sim down)", m.Name)
	}
	if err := s.uncable(ctx, m, log); err != nil {
		return m, err
	}
	s.Machines = slices.DeleteFunc(s.Machines, func(x Machine) bool { return x.Name == m.Name })
	if err := s.save(); err != nil {
		return m, err
	}
	log.Info("server removed", "node", m.Name, "primary_mac", m.PrimaryMAC)
	return m, nil
}

func loadBuilt(dir string) (*State, error) {
	s, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !s.Built {
		return nil, fmt.Errorf("rack %s is not up yet: run racker-sim up first", s.Name)
	}
	return s, nil
}

// server finds a server (not the management node) by name or primary MAC.
func (s *State) server(node string) (Machine, error) {
	m, err := s.Machine(node)
	if err != nil {
		return m, err
	}
	if m.Name == "mgmt" {
		return m, errors.New("the management node is not a server of the rack: it cannot be replaced or removed")
	}
	return m, nil
}

// firmwareOf is the firmware a new server of type t boots with: UEFI when
// asked, else as the rack's servers of that type do.
func (s *State) firmwareOf(t string, uefiTypes []string) string {
	if slices.Contains(uefiTypes, t) {
		return string(vm.UEFI)
	}
	for _, m := range s.Machines[1:] {
		if m.Type == t && m.Firmware != "" {
			return m.Firmware
		}
	}
	return string(vm.BIOS)
}

// cable wires machine m into the running rack: its BMC's namespace and
// veth, its VM (blank disks, off) and its vBMC.
func (s *State) cable(ctx context.Context, m Machine, c LifeConfig, log *slog.Logger) error {
	if !s.NoBMC {
		env, err := netenv.Open(s.netRecord(), log)
		if err != nil {
			return err
		}
		names := netenv.Names{Instance: s.Name}
		ns := s.BMCNamespace(m.Name)
		if err := env.Grow([]string{ns}, []netenv.Veth{{Host: names.Iface(m.Name, "b"), Bridge: names.Bridge("int"), Peer: BMCIface,
			Namespace: ns, MAC: mustMAC(m.BMCMAC)}}); err != nil {
			return fmt.Errorf("while cabling the BMC of %s: %w", m.Name, err)
		}
	}
	disks, err := ParseDisks(c.Disks, nodeTypes(s.Machines))
	if err != nil {
		return err
	}
	mgr, err := vm.Connect(ctx, log)
	if err != nil {
		return err
	}
	defer mgr.Close()
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	if _, err := mgr.Define(ctx, s.vmSpec(m, disks, mem)); err != nil {
		return err
	}
	return startVBMCs(s, Config{SimBinary: c.SimBinary}, log)
}

// uncable takes machine m out: its vBMC, its VM with its disks and its
// BMC's namespace; what is gone already is fine.
func (s *State) uncable(ctx context.Context, m Machine, log *slog.Logger) error {
	role := "vbmc " + m.Name
	for _, p := range s.Processes {
		if p.Role == role {
			if err := p.kill(5 * time.Second); err != nil {
				return err
			}
		}
	}
	s.Processes = slices.DeleteFunc(s.Processes, func(p Process) bool { return p.Role == role })
	if err := s.save(); err != nil {
		return err
	}
	mgr, err := vm.Connect(ctx, log)
	if err != nil {
		return err
	}
	defer mgr.Close()
	if err := mgr.Remove(s.Domain(m.Name)); err != nil {
		return err
	}
	if err := os.RemoveAll(s.machineDir(m.Name)); err != nil {
		return fmt.Errorf("while removing the disks of %s: %w", m.Name, err)
	}
	if s.NoBMC {
		return nil
	}
	env, err := netenv.Open(s.netRecord(), log)
	if err != nil {
		return err
	}
	names := netenv.Names{Instance: s.Name}
	if err := env.Shrink([]string{s.BMCNamespace(m.Name)}, []string{names.Iface(m.Name, "b")}); err != nil {
		return fmt.Errorf("while uncabling the BMC of %s: %w", m.Name, err)
	}
	return nil
}

// vmSpec is machine m's VM.
func (s *State) vmSpec(m Machine, disks DiskPlan, memMiB int) vm.Spec {
	names := netenv.Names{Instance: s.Name}
	return vm.Spec{
		Name: s.Domain(m.Name), Firmware: vm.Firmware(m.Firmware), Disks: disks.For(m.Type), MemoryMiB: memMiB,
		PrimaryMAC: mustMAC(m.PrimaryMAC), SecondaryMAC: mustMAC(m.SecondaryMAC),
		InternalBridge: names.Bridge("int"), PublicBridge: names.Bridge("pub"),
		PrimaryTap: names.Iface(m.Name, "i"), SecondaryTap: names.Iface(m.Name, "p"),
		Dir: s.machineDir(m.Name), NetworkFirst: true,
		// Laptop mode: no vBMC restarts a domain a guest reboot stopped.
		RestartOnReboot: s.NoBMC,
	}
}

// appendRow appends machine m's row to the management node's nodes.csv,
// keeping every byte before it (Racker's comments too).
func appendRow(s *State, m Machine) error {
	path := filepath.Join(s.OEMDir(), "nodes.csv")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("while reading nodes.csv to add %s: %w", m.Name, err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	row := nodesCSV([]Machine{m})
	b = append(b, row[strings.IndexByte(row, '\n')+1:]...) // without the header
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("while writing nodes.csv: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("while replacing nodes.csv: %w", err)
	}
	return nil
}
