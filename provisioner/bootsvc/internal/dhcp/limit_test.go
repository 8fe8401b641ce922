package dhcp

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestEventLimits: a planned MAC hammered with REQUESTs records a burst,
// then one event every eventEvery; unknown MACs record at most
// unknownPerSecond a second, whatever the flood; classes are capped.
func TestEventLimits(t *testing.T) {
	l := newEventLimit()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got := 0
	for i := 0; i < 1000; i++ {
		if l.allow("02:00:00:00:00:01", now.Add(time.Duration(i)*10*time.Millisecond)) { // 100 a second for 10 s
			got++
		}
	}
	if want := eventBurst + int(10*time.Second/eventEvery); got > want || got < eventBurst {
		t.Errorf("%d events recorded for 1000 requests in 10 s, want about %d", got, want)
	}
	p := &perSecond{n: unknownPerSecond}
	got = 0
	for i := 0; i < 200000; i++ {
		if p.allow(now.Add(time.Duration(i) * 50 * time.Microsecond)) { // 200000 in 10 s
			got++
		}
	}
	if got > 11*unknownPerSecond {
		t.Errorf("%d unknown-MAC events for a 10 s flood, want at most %d", got, 11*unknownPerSecond)
	}
	for i := 0; i < maxTrackedMACs+10; i++ {
		l.allow(fmt.Sprintf("m%d", i), now)
	}
	if len(l.buckets) > maxTrackedMACs {
		t.Errorf("%d buckets kept", len(l.buckets))
	}
	if c := capClass(strings.Repeat("x", 255)); len(c) > maxClass+len("…") {
		t.Errorf("class of %d bytes kept", len(c))
	}
}
