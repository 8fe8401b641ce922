package rack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// State is what `up` made, in DIR/state.json; every other command reads it.
type State struct {
	Name         string    `json:"name"`
	Dir          string    `json:"dir"`
	OS           string    `json:"os"`
	NoBMC        bool      `json:"no_bmc"`
	PublicSubnet string    `json:"public_subnet"`
	Machines     []Machine `json:"machines"` // management node first
	// InstallFail lists the servers whose next installs fail (fault).
	InstallFail []string  `json:"install_fail,omitempty"`
	Processes   []Process `json:"processes,omitempty"`
	// RackerImage is the digest of the installer image last run in the
	// management node; up runs an image only once.
	RackerImage string `json:"racker_image,omitempty"`
	Built       bool   `json:"built"` // up finished once
}

// Process is a background process `up` started and `down` kills.
type Process struct {
	Role string `json:"role"` // "vbmc n1", "mgmt node"
	PID  int    `json:"pid"`
	// Start is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22): a PID the kernel reused for another
	// process has another start time and is left alone.
	Start uint64 `json:"start"`
	Log   string `json:"log"`
}

// Layout of the state folder.
func (s *State) statePath() string          { return filepath.Join(s.Dir, "state.json") }
func (s *State) netRecord() string          { return filepath.Join(s.Dir, "net.json") }
func (s *State) machineDir(m string) string { return filepath.Join(s.Dir, "nodes", m) }

// MgmtDir holds the management node's disks (simulator/mgmtnode.Layout);
// OEMDir is its OEM partition, /usr/share/oem inside it.
func (s *State) MgmtDir() string { return filepath.Join(s.Dir, "mgmt") }
func (s *State) OEMDir() string  { return s.Node().OEM() }

// MgmtNamespace is the management node's network namespace.
func (s *State) MgmtNamespace() string { return s.Name + "-mgmt" }

// BMCNamespace is a server's BMC network namespace.
func (s *State) BMCNamespace(node string) string { return s.Name + "-" + node + "-bmc" }

// Domain is a server's libvirt domain name (contract D).
func (s *State) Domain(node string) string { return s.Name + "-" + node }

// Machine finds a server or the management node by name or primary MAC.
func (s *State) Machine(nameOrMAC string) (Machine, error) {
	for _, m := range s.Machines {
		if m.Name == nameOrMAC || strings.EqualFold(m.PrimaryMAC, nameOrMAC) {
			return m, nil
		}
	}
	var names []string
	for _, m := range s.Machines {
		names = append(names, m.Name)
	}
	return Machine{}, fmt.Errorf("rack %s has no node %q (nodes: %s)", s.Name, nameOrMAC, strings.Join(names, ", "))
}

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("while encoding the rack state: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("while creating the rack folder %s: %w", s.Dir, err)
	}
	tmp := s.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("while writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.statePath()); err != nil {
		return fmt.Errorf("while replacing %s: %w", s.statePath(), err)
	}
	return nil
}

// ErrNoRack says there is no rack with that name and folder.
var ErrNoRack = errors.New("no such rack")

// Load reads the state of the rack in dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: nothing in %s (run racker-sim up)", ErrNoRack, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("while reading the rack state in %s: %w", dir, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("while parsing %s/state.json: %w", dir, err)
	}
	return &s, nil
}

// procStart reads a process's start time (ticks since boot); 0 when the
// process does not exist.
func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0 // a zombie is as good as gone
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Alive says whether the recorded process still runs (and is the same one).
func (p Process) Alive() bool { return p.PID > 0 && procStart(p.PID) == p.Start }

// kill stops a recorded process: SIGTERM, then SIGKILL after a grace period.
func (p Process) kill(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("while killing %s (pid %d): %w", p.Role, p.PID, err)
	}
	for i := 0; i < 100 && p.Alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Alive() {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Role, p.PID)
	}
	return nil
}
