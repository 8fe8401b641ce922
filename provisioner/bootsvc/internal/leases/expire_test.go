package leases

import (
	"net/netip"
	"testing"
	"time"
)

// TestExpiredLeasesAreDropped: an expired lease neither authorises its old
// address (Addr) nor stays in memory or in the journal.
func TestExpiredLeasesAreDropped(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := Open(dir, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	old := Lease{MAC: "02:00:00:00:00:01", IP: netip.MustParseAddr("10.0.0.1"), Expires: now.Add(time.Minute), Kind: "pool"}
	keep := Lease{MAC: "02:00:00:00:00:02", IP: netip.MustParseAddr("10.0.0.2"), Expires: now.Add(time.Hour), Kind: "pool"}
	for _, l := range []Lease{old, keep} {
		if err := s.Put(l); err != nil {
			t.Fatal(err)
		}
	}
	if ip, ok := s.Addr(old.MAC); !ok || ip != old.IP {
		t.Fatalf("Addr of a current lease = %v %v", ip, ok)
	}
	now = now.Add(2 * time.Minute)
	if ip, ok := s.Addr(old.MAC); ok {
		t.Fatalf("an expired lease still authorises %v", ip)
	}
	s.Sweep()
	if _, ok := s.Get(old.MAC); ok || len(s.All()) != 1 {
		t.Fatalf("expired lease kept in memory: %+v", s.All())
	}
	s.Close()
	s, err = Open(dir, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Get(old.MAC); ok {
		t.Fatal("expired lease came back after a restart")
	}
	if _, ok := s.Get(keep.MAC); !ok {
		t.Fatal("current lease lost")
	}
}
