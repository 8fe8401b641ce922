package dhcp

import (
	"sync"
	"time"
)

// What DHCP records is bounded, whoever sends it: the journal is durable
// and every event costs a share of an fsync, so a host that sends REQUESTs
// in a planned machine's name, or DISCOVERs from random MACs, must not be
// able to fill the disk or stall recording. Answers are not limited (a
// client that renews gets its ACK; the work queue bounds the load);
// events are:
//
//   - per MAC, a token bucket: eventBurst events at once, then one every
//     eventEvery (a netboot is a handful: PXE ROM, iPXE, the OS);
//   - MACs the plan does not know: one machine_seen per MAC per five
//     minutes (seenFilter) and at most unknownPerSecond overall.
const (
	eventBurst       = 10
	eventEvery       = 6 * time.Second
	unknownPerSecond = 20
	maxTrackedMACs   = 100000
	// maxClass bounds a vendor or user class in an event's message
	// (each may be up to 255 bytes on the wire).
	maxClass = 64
)

type bucket struct {
	tokens float64
	last   time.Time
}

// eventLimit is the per-MAC token bucket for events.
type eventLimit struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

func newEventLimit() *eventLimit { return &eventLimit{buckets: map[string]*bucket{}} }

// allow takes a token of mac's bucket at now.
func (l *eventLimit) allow(mac string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[mac]
	if !ok {
		if len(l.buckets) >= maxTrackedMACs { // a flood of MACs: start over
			clear(l.buckets)
		}
		b = &bucket{tokens: eventBurst, last: now}
		l.buckets[mac] = b
	}
	b.tokens = min(eventBurst, b.tokens+now.Sub(b.last).Seconds()/eventEvery.Seconds())
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// perSecond lets at most n events a second through.
type perSecond struct {
	mu     sync.Mutex
	n      int
	second time.Time
	count  int
}

func (p *perSecond) allow(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.second) >= time.Second {
		p.second, p.count = now, 0
	}
	if p.count >= p.n {
		return false
	}
	p.count++
	return true
}

func capClass(s string) string {
	if len(s) > maxClass {
		return s[:maxClass] + "…"
	}
	return s
}
