package orchestrator

import (
	"errors"
	"testing"
)

// Forget drops the records of machines that left the rack and keeps the
// others; a second Forget is harmless; while a run holds the state it
// refuses (it never writes under a running bootstrap).
func TestForget(t *testing.T) {
	dir := t.TempDir()
	err := Update(dir, func(st *State) error {
		st.Nodes["02:00:00:00:01:00"] = &Node{PrimaryMAC: "02:00:00:00:01:00", Hostname: "racker-worker-0", Phase: Booted}
		st.Nodes["02:00:00:00:02:00"] = &Node{PrimaryMAC: "02:00:00:00:02:00", Hostname: "racker-worker-1", Phase: Booted}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := Forget(dir, []string{"02:00:00:00:02:00"}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || st.Nodes["02:00:00:00:01:00"] == nil || st.Nodes["02:00:00:00:01:00"].Phase != Booted {
		t.Errorf("after Forget: %+v", st.Nodes)
	}
	l, err := lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Forget(dir, []string{"02:00:00:00:01:00"}); !errors.Is(err, ErrBusy) {
		t.Errorf("Forget under a running bootstrap: %v, want ErrBusy", err)
	}
}
