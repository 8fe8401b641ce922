package dhcp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestPoolMemoryIsBoundedUnderAMACFlood: a flood of DISCOVERs from random
// MACs, each offer running out, leaves the pool's maps no larger than the
// pool itself (before, every MAC ever offered an address stayed in byMAC).
func TestPoolMemoryIsBoundedUnderAMACFlood(t *testing.T) {
	p := newPool(netip.MustParsePrefix("10.9.0.0/24"), map[netip.Addr]bool{}, nil)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 20000; i++ {
		if _, ok := p.offer(fmt.Sprintf("02:ff:00:00:%02x:%02x", i/256%256, i%256), netip.Addr{}, now); !ok {
			now = now.Add(2 * offerHold) // every offer ran out: the pool is free again
			i--
			continue
		}
	}
	if len(p.byMAC) > p.size() || len(p.byIP) > p.size() {
		t.Fatalf("after 20000 MACs: byMAC %d, byIP %d entries for a pool of %d", len(p.byMAC), len(p.byIP), p.size())
	}
}
