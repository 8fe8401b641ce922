package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// StateFile is where a Store keeps the plan's state, inside the state folder.
const StateFile = "plan.json"

// Store is an Allocator backed by a file in the state folder. Updates hold
// an exclusive lock and replace the file atomically, so concurrent racker
// processes (serve and bootstrap) and crashes lose nothing.
type Store struct{ Path string }

// NewStore returns the store in stateDir.
func NewStore(stateDir string) *Store { return &Store{Path: filepath.Join(stateDir, StateFile)} }

// Load reads the stored state (empty if there is none yet).
func (s *Store) Load() (State, error) {
	var st State
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading plan state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("reading plan state %s: %w", s.Path, err)
	}
	if st.Version > StateVersion {
		return st, fmt.Errorf("reading plan state %s: format %d is from a newer Racker (this one reads up to %d)", s.Path, st.Version, StateVersion)
	}
	migrate(&st)
	return st, nil
}

// Snapshot returns an in-memory allocator seeded with the stored state: a
// dry run that shows the addresses a real run would keep, writing nothing.
func (s *Store) Snapshot() (*Memory, error) {
	st, err := s.Load()
	if err != nil {
		return nil, err
	}
	return &Memory{State: st}, nil
}

// version is the format of the file on disk (StateVersion when there is
// none yet, as a new file is written in this release's format).
func (s *Store) version() (int, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return StateVersion, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading plan state: %w", err)
	}
	var v struct {
		Version int `json:"version"`
	}
	_ = json.Unmarshal(b, &v) // Load reports a broken file
	return v.Version, nil
}

// Remember saves choices (by flag name, canonical values) in plan.json,
// replacing those of the same name and keeping the others.
func (s *Store) Remember(choices map[string]string) error {
	return s.Update(func(st *State) error {
		st.remember(choices)
		return nil
	})
}

// Remember keeps choices in memory, as Store.Remember does on disk.
func (m *Memory) Remember(choices map[string]string) error {
	return m.Update(func(st *State) error {
		st.remember(choices)
		return nil
	})
}

func (st *State) remember(choices map[string]string) {
	if st.Choices == nil {
		st.Choices = map[string]string{}
	}
	for k, v := range choices {
		st.Choices[k] = v
	}
}

func (s *Store) Update(fn func(*State) error) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	lock, err := os.OpenFile(s.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("locking plan state: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking plan state: %w", err)
	}
	onDisk, err := s.version()
	if err != nil {
		return err
	}
	st, err := s.Load()
	if err != nil {
		return err
	}
	before := st.clone()
	st = st.clone()
	if err := fn(&st); err != nil {
		return err
	}
	// An older file is rewritten in this release's format even when
	// nothing else changed: its migrated choices are kept from now on.
	if reflect.DeepEqual(before, st) && onDisk == StateVersion {
		return nil
	}
	st.Version = StateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.Path, append(b, '\n'), 0o644)
}
