package leases

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func lease(i int) Lease {
	return Lease{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), IP: netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i % 256)}),
		Expires: time.Unix(4100000000+int64(i), 0).UTC(), Kind: "pool"} // far in the future: never expires during a test
}

func TestLeasesSurviveReopenAndLookup(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := s.Put(lease(i)); err != nil {
			t.Fatal(err)
		}
	}
	released := make(chan error, 1)
	s.Release(lease(3).MAC, func(err error) { released <- err })
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	// Another process reads the journal while the server still runs.
	ip, ok, err := Lookup(dir, strings.ToUpper(lease(7).MAC))
	if err != nil || !ok || ip != lease(7).IP {
		t.Fatalf("Lookup while serving = %v %v %v, want %v", ip, ok, err, lease(7).IP)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := len(s2.All()); got != 9 {
		t.Fatalf("after reopen: %d leases, want 9", got)
	}
	if _, ok := s2.Get(lease(3).MAC); ok {
		t.Fatal("released lease came back after reopen")
	}
	got, ok := s2.Get(lease(5).MAC)
	if !ok || got != lease(5) {
		t.Fatalf("lease 5 after reopen = %+v, want %+v", got, lease(5))
	}
	if _, ok, _ := Lookup(dir, lease(3).MAC); ok {
		t.Fatal("Lookup found a released lease")
	}
}

func TestSecondStoreOnSameFolderIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("a second store opened the same folder")
	}
}

func TestTornLastLineIsSkipped(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lease(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"mac":"02:00:00:00:00:02","ip":"10.0`) // crash in mid-write
	f.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lease(2)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, i := range []int{1, 2} {
		ip, ok, err := Lookup(dir, lease(i).MAC)
		if err != nil || !ok || ip != lease(i).IP {
			t.Fatalf("lease %d after a torn line: %v %v %v", i, ip, ok, err)
		}
	}
}

// TestGroupCommitSharesFsyncsAndCompacts commits from many goroutines; the
// journal must hold every lease, and compaction must keep it small.
func TestGroupCommitSharesFsyncsAndCompacts(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CompactAfter: 100})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < 20; r++ { // every client renews 20 times
				for i := g * 4; i < g*4+4; i++ {
					l := lease(i)
					l.Expires = l.Expires.Add(time.Duration(r) * time.Minute)
					if err := s.Put(l); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	s.Close()
	b, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(b), "\n")
	if lines > 4*64+100 {
		t.Fatalf("journal has %d lines for 64 leases: compaction did not run", lines)
	}
	live, err := readJournal(filepath.Join(dir, JournalFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		want := lease(i)
		want.Expires = want.Expires.Add(19 * time.Minute)
		if got := live[want.MAC]; got != want {
			t.Fatalf("lease %d = %+v, want the last renewal %+v", i, got, want)
		}
	}
}

func BenchmarkCommitParallel(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(16)
	var n sync.Mutex
	i := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			i++
			l := lease(i % 2000)
			n.Unlock()
			if err := s.Put(l); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCloseAnswersEveryCommitOnce: commits still queued at Close are
// written and answered, and none is answered twice.
func TestCloseAnswersEveryCommitOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lease(0)); err != nil { // leaves a batch behind in the committer
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	for i := 1; i <= 200; i++ {
		l := lease(i)
		s.Commit(l, func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			calls[l.MAC]++
			mu.Unlock()
		})
	}
	s.Close()
	if len(calls) != 200 {
		t.Fatalf("%d commits answered, want 200", len(calls))
	}
	for mac, n := range calls {
		if n != 1 {
			t.Fatalf("commit of %s answered %d times", mac, n)
		}
	}
	if live, _ := readJournal(filepath.Join(dir, JournalFile), nil); len(live) != 201 {
		t.Fatalf("journal holds %d leases, want 201", len(live))
	}
}
