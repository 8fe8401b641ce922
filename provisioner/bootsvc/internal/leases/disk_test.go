package leases

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/internal/testenv"
)

// smallDisk mounts a tmpfs of size bytes for the test (root only) and
// returns its folder; a filler file takes all but keep bytes of it.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fill writes a filler file until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, 512)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

func future(i int) Lease {
	l := lease(i)
	l.Expires = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	return l
}

// TestTornWriteIsCutBeforeTheNextAppend: a disk that fills in the middle
// of a batch leaves part of a line in the journal. The next commit, once
// there is space again, must not be glued to that part: a lease that was
// acknowledged must be there after a restart.
func TestTornWriteIsCutBeforeTheNextAppend(t *testing.T) {
	dir := smallDisk(t, 64<<10)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(future(1)); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)
	// A batch larger than what is left: part of it reaches the file.
	failed := 0
	done := make(chan error, 64)
	for i := 10; i < 74; i++ {
		s.Commit(future(i), func(err error) { done <- err })
	}
	for range 64 {
		if err := <-done; err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("every commit succeeded on a full disk")
	}
	// Nothing acknowledged without being durable: what failed is not
	// served to readers either.
	if _, ok := s.Get(future(73).MAC); ok && failed == 64 {
		t.Fatal("a lease whose commit failed is still visible")
	}
	os.Remove(filler)
	if err := s.Put(future(2)); err != nil {
		t.Fatalf("commit after space returned: %v", err)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, i := range []int{1, 2} {
		if got, ok := s.Get(future(i).MAC); !ok || got.IP != future(i).IP {
			t.Fatalf("acknowledged lease %d lost after a torn write and a restart (have %d leases)", i, len(s.All()))
		}
	}
}

// TestENOSPCNoAckThenResumes: on a full disk every commit fails (so the
// DHCP server sends no ACK); when space returns, commits succeed again
// without a restart, and every acknowledged lease survives one.
func TestENOSPCNoAckThenResumes(t *testing.T) {
	dir := smallDisk(t, 64<<10)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]netip.Addr{}
	for i := 0; i < 5; i++ {
		if err := s.Put(future(i)); err != nil {
			t.Fatal(err)
		}
		acked[future(i).MAC] = future(i).IP
	}
	filler := fill(t, dir)
	// Small commits until one fails: the page the journal ends in fills first.
	sawFailure := false
	for i := 100; i < 400 && !sawFailure; i++ {
		if err := s.Put(future(i)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("commit on a full disk: %v, want ENOSPC", err)
			}
			sawFailure = true
			if _, ok := s.Get(future(i).MAC); ok {
				t.Fatalf("lease %d failed to commit but readers see it", i)
			}
			continue
		}
		acked[future(i).MAC] = future(i).IP
	}
	if !sawFailure {
		t.Fatal("no commit failed on a full disk")
	}
	if err := s.Put(future(999)); err == nil {
		t.Fatal("a commit succeeded while the disk is still full")
	}
	os.Remove(filler)
	for i := 500; i < 520; i++ {
		if err := s.Put(future(i)); err != nil {
			t.Fatalf("commit %d after space returned: %v", i, err)
		}
		acked[future(i).MAC] = future(i).IP
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for mac, ip := range acked {
		if got, ok := s.Get(mac); !ok || got.IP != ip {
			t.Fatalf("acknowledged lease of %s lost (have %d of %d)", mac, len(s.All()), len(acked))
		}
	}
}
