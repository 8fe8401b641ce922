package bmc

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestFilePinsFirstUseWinsAndPersists(t *testing.T) {
	path := t.TempDir() + "/state/bmc-pins.json"
	// Two stores on one file, as two racker processes: of 20 racing first
	// connections showing different keys, exactly one pins, and all agree.
	a, b := &FilePins{Path: path}, &FilePins{Path: path}
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts, seen := 0, map[string]bool{}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			pinned, first, err := s.Pin("10.0.0.5:443", fmt.Sprintf("sha256:%02d", i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			seen[pinned] = true
			if first {
				firsts++
			}
		}()
	}
	wg.Wait()
	if firsts != 1 || len(seen) != 1 {
		t.Fatalf("%d first pins, %d different pins seen; want 1 and 1", firsts, len(seen))
	}
	// A new store (a later run) reads the pin.
	var want string
	for k := range seen {
		want = k
	}
	got, first, err := (&FilePins{Path: path}).Pin("10.0.0.5:443", "sha256:ff")
	if err != nil || first || got != want {
		t.Fatalf("later Pin = %q, %v, %v; want %q pinned before", got, first, err, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pin file mode: %v %v", fi.Mode(), err)
	}

	// Forget: the next key is pinned anew.
	if ok, err := a.Forget("10.0.0.5:443"); !ok || err != nil {
		t.Fatalf("Forget = %v, %v", ok, err)
	}
	if got, first, _ := a.Pin("10.0.0.5:443", "sha256:ee"); !first || got != "sha256:ee" {
		t.Fatalf("after Forget: %q, first=%v", got, first)
	}
}

func TestFilePinsBrokenFileIsNamed(t *testing.T) {
	path := t.TempDir() + "/bmc-pins.json"
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := (&FilePins{Path: path}).Pin("h:443", "sha256:00")
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v; want the file named", err)
	}
}

func TestPinMismatchErrorNamesTheStore(t *testing.T) {
	e := &PinMismatchError{BMC: "10.0.0.5:443", Pinned: "sha256:aa", Got: "sha256:bb", Store: "/opt/racker-state/bmc-pins.json"}
	msg := e.Error()
	for _, want := range []string{"10.0.0.5:443", "sha256:aa", "sha256:bb", "/opt/racker-state/bmc-pins.json", "replaced"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}
