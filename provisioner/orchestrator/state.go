package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Files inside the state folder.
const (
	// StateFile holds every node's record and the last boot-services event
	// consumed: a snapshot, replaced atomically, that JournalFile
	// continues while a run is under way (journal.go). A kill -9 at any
	// moment leaves every batch of changes the loop acted on, and readers
	// (racker status) never block the writer.
	StateFile = "provision.json"
	// LogFile gets one JSON line per phase transition: the history, for
	// people and benchmarks. A run appends to it before each journal
	// record and syncs it when it ends.
	LogFile  = "provision-log.jsonl"
	lockFile = "provision.lock"
)

// Node is the orchestrator's record of one node, persisted in StateFile. It
// is also what racker status shows. Where the node stands is its Phase
// alone; the other fields are what the phases need to know (an order, a
// cause, facts learned) and what was observed.
type Node struct {
	PrimaryMAC string    `json:"primary_mac"`
	BMCMAC     string    `json:"bmc_mac,omitempty"`
	Hostname   string    `json:"hostname,omitempty"`
	Role       string    `json:"role,omitempty"`
	Type       string    `json:"type,omitempty"`
	Phase      Phase     `json:"phase"`
	PhaseSince time.Time `json:"phase_since"`

	// Failures counts failures since the node last started afresh; the
	// retry policy compares it with --retries.
	Failures int    `json:"failures,omitempty"`
	Reason   string `json:"reason,omitempty"` // why failed or excluded
	// ExcludedByUser: the cause of excluding/excluded is --exclude, not
	// failures (which Result.Failed counts).
	ExcludedByUser bool `json:"excluded_by_user,omitempty"`
	// NeedReinstall is an order (reprovision, retry) carried from pending
	// to the BMC check, where the reinstall phase takes it: ask the boot
	// services for a new install generation before PXE, so the node gets
	// the install script and not "boot from disk". WipeAll goes with it.
	NeedReinstall bool `json:"need_reinstall,omitempty"`
	WipeAll       bool `json:"wipe_all,omitempty"`
	// UEFISeen is a fact about the hardware: the node's firmware netbooted
	// as x86-64 UEFI (DHCP client architecture 7 or 9), so its boot flags
	// carry the EFI bit even when its type was not declared UEFI.
	UEFISeen bool `json:"uefi_seen,omitempty"`
	// PoweredOnWaiting: the power watch found the node off while it should
	// be booting and powered it on; it does so once per phase, then fails
	// the node if it is off again.
	PoweredOnWaiting bool `json:"powered_on_waiting,omitempty"`
	// RetryAt delays the next operation after an error (and the power
	// watch's next check).
	RetryAt   time.Time `json:"retry_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`

	// What the BMC said last, for status.
	BMCReachable *bool  `json:"bmc_reachable,omitempty"`
	Power        string `json:"power,omitempty"`
	BootDevice   string `json:"boot_device,omitempty"`

	InstallGeneration int       `json:"install_generation,omitempty"`
	OS                string    `json:"os,omitempty"`
	LastEvent         string    `json:"last_event,omitempty"`
	LastEventAt       time.Time `json:"last_event_at,omitzero"`
}

// Versions of StateFile. Version 2: the sub-states that were booleans
// (started, disk_boot_set, booted_seen, power_off_done; need_reinstall at
// bmc_reachable) are phases; files without a version are the release
// before that, which Load migrates. Version 3 is a version-2 snapshot that
// JournalFile continues (journal.go); this release writes 3 during a run
// and 2 otherwise.
const stateVersion = stateVersionJournal

// State is everything the orchestrator persists.
type State struct {
	Version int `json:"version"`
	// LastEventSeq is the sequence number of the last boot-services event
	// whose effects are in Nodes: a resumed run asks for the events after
	// it, so no event is lost and none is applied twice.
	LastEventSeq uint64 `json:"last_event_seq"`
	// EventEpoch names the journal LastEventSeq counts in: a journal
	// started anew (its file deleted) has another epoch and numbers from
	// 1 again, and the run reads it from its start.
	EventEpoch string `json:"event_epoch,omitempty"`
	// EventsSynced: the first run skipped the journal's older history
	// (events of earlier installs must not move today's nodes).
	EventsSynced bool             `json:"events_synced"`
	Nodes        map[string]*Node `json:"nodes"`
	// JournalSeq is the last journal record whose changes are in Nodes.
	JournalSeq uint64 `json:"journal_seq,omitempty"`
}

// Sorted returns the nodes ordered by hostname, then MAC.
func (s *State) Sorted() []Node {
	out := make([]Node, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].PrimaryMAC < out[j].PrimaryMAC
	})
	return out
}

// Transition is one line of LogFile.
type Transition struct {
	Time     time.Time `json:"time"`
	MAC      string    `json:"mac"`
	Hostname string    `json:"hostname,omitempty"`
	From     Phase     `json:"from"`
	To       Phase     `json:"to"`
	Cause    string    `json:"cause"`
}

// Load reads the persisted state of stateDir (the snapshot, then the
// journal records after it) without taking any lock, so it can run while
// a bootstrap writes. A missing file is an empty state.
func Load(stateDir string) (*State, error) {
	// A compaction between reading the snapshot and the journal shows as
	// a journal newer than the snapshot: read both again.
	for try := 0; try < 20; try++ {
		st, err := loadSnapshot(stateDir)
		if err != nil {
			return nil, err
		}
		base, recs, ok, err := readJournal(stateDir)
		if err != nil {
			return nil, err
		}
		if !ok {
			// A journal snapshot without its journal: the run is just
			// ending (look again for the complete snapshot) or was killed
			// before its journal began (the snapshot is the state).
			if st.Version == stateVersionJournal && try < 2 {
				continue
			}
			return st, nil
		}
		if base > st.JournalSeq {
			continue
		}
		for _, r := range recs {
			if r.Seq <= st.JournalSeq {
				continue
			}
			for _, n := range r.Nodes {
				st.Nodes[n.PrimaryMAC] = n
			}
			st.LastEventSeq, st.EventsSynced, st.JournalSeq = r.LastEventSeq, r.EventsSynced, r.Seq
		}
		return st, nil
	}
	return nil, fmt.Errorf("reading provisioning state in %s: the snapshot and its journal kept changing under the reader", stateDir)
}

// loadSnapshot reads StateFile alone, migrating the previous release's.
func loadSnapshot(stateDir string) (*State, error) {
	st := &State{Nodes: map[string]*Node{}}
	path := filepath.Join(stateDir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading provisioning state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("reading provisioning state %s: %w", path, err)
	}
	switch {
	case st.Version > stateVersion:
		return nil, fmt.Errorf("reading provisioning state %s: format %d is from a newer Racker (this one reads up to %d)", path, st.Version, stateVersion)
	case st.Version < 2:
		if err := migrateV1(b, st); err != nil {
			return nil, fmt.Errorf("reading provisioning state %s: %w", path, err)
		}
	}
	if st.Nodes == nil {
		st.Nodes = map[string]*Node{}
	}
	return st, nil
}

func appendLog(stateDir string, ts []Transition) error {
	if len(ts) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(stateDir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening transition log: %w", err)
	}
	defer f.Close()
	var buf []byte
	for _, t := range ts {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("appending to transition log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing transition log: %w", err)
	}
	return nil
}

// ReadLog returns the transitions logged in stateDir.
func ReadLog(stateDir string) ([]Transition, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, LogFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Transition
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var t Transition
		if err := dec.Decode(&t); err != nil {
			// A torn last line after a crash: keep what was whole.
			break
		}
		out = append(out, t)
	}
	return out, nil
}

// ErrBusy says another racker process is provisioning with this state folder.
var ErrBusy = errors.New("another racker bootstrap or reprovision is running with this state folder")

// lock takes the state folder's provisioning lock, so two runs never write
// the same state. It is released by closing the file (or by the process
// dying: a kill -9 never leaves a stale lock).
func lock(stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking provisioning state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrBusy, stateDir)
		}
		return nil, fmt.Errorf("locking provisioning state: %w", err)
	}
	return f, nil
}

// Update changes the persisted state under the provisioning lock: for
// commands that mark nodes (reprovision, cluster ready) outside a run.
func Update(stateDir string, fn func(*State) error) error {
	l, err := lock(stateDir)
	if err != nil {
		return err
	}
	defer l.Close()
	st, err := Load(stateDir)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return finishState(stateDir, st)
}

// MarkReprovision sends the named nodes (primary MACs) back to pending with
// a wipe-all reinstall ordered, under the provisioning lock; the next Run
// takes them through the whole state machine again. Other nodes are
// untouched.
func MarkReprovision(stateDir string, macs []string, now time.Time) error {
	return mark(stateDir, now, func(m *machine, st *State) {
		for _, mac := range macs {
			n := st.Nodes[mac]
			if n == nil {
				n = &Node{PrimaryMAC: mac}
				st.Nodes[mac] = n
			}
			m.step(n, inReprovision, happening{})
		}
	})
}

// Forget removes the records of machines that left the rack (racker
// retire, the old machine of a racker replace), under the provisioning
// lock: status no longer shows them, and a run never waits for them. A
// MAC without a record is no error (forgetting twice is the same).
func Forget(stateDir string, macs []string) error {
	return Update(stateDir, func(st *State) error {
		for _, mac := range macs {
			delete(st.Nodes, mac)
		}
		return nil
	})
}

// MarkReady records that the cluster profile finished with these nodes.
func MarkReady(stateDir string, macs []string, now time.Time) error {
	return mark(stateDir, now, func(m *machine, st *State) {
		for _, mac := range macs {
			if n := st.Nodes[mac]; n != nil {
				m.step(n, inClusterReady, happening{})
			}
		}
	})
}

// mark applies inputs outside a run, through the same machine, and logs
// the transitions.
func mark(stateDir string, now time.Time, fn func(*machine, *State)) error {
	return Update(stateDir, func(st *State) error {
		m := &machine{cfg: &Config{}, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
		fn(m, st)
		return appendLog(stateDir, m.logged)
	})
}
