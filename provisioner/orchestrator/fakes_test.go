package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Test doubles: a simulated clock, an in-memory boot services (events
// journal + node targets) and simulated nodes that react to their fake BMC
// (provisioner/bmc's fake:// driver) the way a real node does. They are
// fakes for unit tests; the real boot services are exercised in
// bootsvc_test.go.

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// hasTimerAt says whether a timer is due at exactly at (an operation waits).
func (c *fakeClock) hasTimerAt(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.at.Equal(at) {
			return true
		}
	}
	return false
}

type fakeBoot struct {
	clock *fakeClock
	mu    sync.Mutex
	seq   uint64
	evs   []api.Event
	wake  chan struct{}
	nodes map[string]*api.Node
	// reinstalls lists the MACs of reinstall requests, with "+wipe" when wipe_all.
	reinstalls []string
	netboots   []string // boot windows opened
	down       bool
}

func newFakeBoot(c *fakeClock) *fakeBoot {
	return &fakeBoot{clock: c, wake: make(chan struct{}), nodes: map[string]*api.Node{}}
}

// Emit journals ev, with the fake's next Seq and its clock's Time.
func (f *fakeBoot) Emit(ev api.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	ev.Seq, ev.Time = f.seq, f.clock.Now()
	f.evs = append(f.evs, ev)
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeBoot) EventsIn(ctx context.Context, epoch string, after uint64, wait time.Duration) ([]api.Event, error) {
	for {
		f.mu.Lock()
		if f.down {
			f.mu.Unlock()
			return nil, fmt.Errorf("boot services down")
		}
		var out []api.Event
		for _, e := range f.evs {
			if e.Seq > after {
				out = append(out, e)
			}
		}
		wake := f.wake
		f.mu.Unlock()
		if len(out) > 0 || wait == 0 {
			return out, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fakeBoot) Nodes(ctx context.Context) ([]api.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Node
	for _, n := range f.nodes {
		out = append(out, *n)
	}
	return out, nil
}

func (f *fakeBoot) Reinstall(ctx context.Context, mac string, wipeAll bool) (api.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[mac]
	if n == nil {
		n = &api.Node{PrimaryMAC: mac}
		f.nodes[mac] = n
	}
	n.InstallGeneration++
	n.Target = api.TargetInstall
	r := mac
	if wipeAll {
		r += "+wipe"
	}
	f.reinstalls = append(f.reinstalls, r)
	return *n, nil
}

func (f *fakeBoot) Netboot(ctx context.Context, mac string) (api.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[mac]
	if n == nil {
		n = &api.Node{PrimaryMAC: mac, Target: api.TargetInstall}
		f.nodes[mac] = n
	}
	f.netboots = append(f.netboots, mac)
	return *n, nil
}

func (f *fakeBoot) Reinstalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reinstalls...)
}

// simNode plays a node: each time its BMC powers it on or cycles it with
// PXE as boot device, it netboots and emits the events up to stopAfter
// (failing the install instead when failInstalls > 0), and once installed it
// emits "booted" when the BMC's boot device is disk.
type simNode struct {
	mac          string
	bmc          *bmc.FakeBMC
	boot         *fakeBoot
	stopAfter    api.EventKind // last event to emit: "" = all the way to booted, neverNetboots = none
	failInstalls int           // the first N installs fail
	seenActions  int
	installed    bool // the node has an installed OS that boots from disk
}

func (s *simNode) run(ctx context.Context) {
	installed := s.installed
	for ctx.Err() == nil {
		time.Sleep(time.Millisecond)
		acts := s.bmc.Actions()
		if len(acts) > s.seenActions {
			last := acts[len(acts)-1]
			s.seenActions = len(acts)
			if (last == bmc.ActionOn || last == bmc.ActionCycle) && s.bmc.Flags().Device == bmc.DevicePXE {
				installed = s.netboot()
			}
			continue
		}
		if installed && s.bmc.Flags().Device == bmc.DeviceDisk && s.bmc.Flags().Persistent && s.stopAfter == "" {
			s.boot.Emit(api.Event{MAC: s.mac, Kind: api.KindBooted})
			installed = false
		}
	}
}

// neverNetboots as stopAfter: the firmware never netboots.
const neverNetboots api.EventKind = "none"

// netboot emits the events of one PXE boot; it reports whether the node
// ended up installed.
func (s *simNode) netboot() bool {
	if s.stopAfter == neverNetboots {
		return false // the firmware never netboots
	}
	steps := []api.Event{{Kind: api.KindDHCP, Message: "ip 10.0.0.2"}, {Kind: api.KindIPXE, Script: api.ScriptInstall},
		{Kind: api.KindIgnition, Ignition: api.IgnitionInstall}, {Kind: api.KindInstalling}, {Kind: api.KindInstalled}}
	for _, st := range steps {
		st.MAC = s.mac
		if st.Kind == api.KindInstalled && s.failInstalls > 0 {
			s.failInstalls--
			s.boot.Emit(api.Event{MAC: s.mac, Kind: api.KindFailed, Message: "flatcar-install: no disk"})
			return false
		}
		s.boot.Emit(st)
		if st.Kind == s.stopAfter {
			return st.Kind == api.KindInstalled
		}
	}
	return true
}

type harness struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	boot  *fakeBoot
	cfg   Config
	name  string

	mu   sync.Mutex
	snap map[string]Node
	max  int // most nodes in flight seen at once
	done chan struct{}
	res  Result
	err  error
	stop context.CancelFunc
}

func mac(i int) string { return fmt.Sprintf("52:54:00:00:00:%02x", i) }

// newHarness makes n nodes (node i has MAC mac(i), hostname nI; odd nodes are EFI).
func newHarness(t *testing.T, n int) *harness {
	clock := newFakeClock()
	h := &harness{t: t, dir: t.TempDir(), clock: clock, boot: newFakeBoot(clock), name: fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())}
	var specs []NodeSpec
	for i := 1; i <= n; i++ {
		specs = append(specs, NodeSpec{PrimaryMAC: mac(i), BMCMAC: mac(100 + i), Hostname: fmt.Sprintf("n%d", i), Role: "worker", Type: "t", EFI: i%2 == 0})
		t.Cleanup(func() { bmc.ForgetFake(h.bmcName(mac(i))) })
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	h.cfg = Config{
		StateDir: h.dir, Nodes: specs, Boot: h.boot,
		OpenBMC: ControllerOpener(func(ctx context.Context, n NodeSpec) (string, error) {
			return "fake://" + h.bmcName(n.PrimaryMAC), nil
		}, bmc.Options{}),
		Policy:      Policy{OnFailure: Exclude},
		BMCInterval: -1,
		Clock:       clock,
		OS:          "testos current",
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	return h
}

func (h *harness) bmcName(m string) string { return h.name + "/" + m }
func (h *harness) bmc(i int) *bmc.FakeBMC  { return bmc.Fake(h.bmcName(mac(i))) }

// sim starts a simulated node i until the test ends.
func (h *harness) sim(i int, stopAfter api.EventKind, failInstalls int) {
	h.startSim(i, stopAfter, failInstalls, false)
}

func (h *harness) startSim(i int, stopAfter api.EventKind, failInstalls int, installed bool) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &simNode{mac: mac(i), bmc: h.bmc(i), boot: h.boot, stopAfter: stopAfter, failInstalls: failInstalls,
		seenActions: len(h.bmc(i).Actions()), installed: installed}
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.done = make(chan struct{})
	cfg := h.cfg
	user := cfg.OnChange
	cfg.OnChange = func(ns []Node) {
		h.mu.Lock()
		h.snap = map[string]Node{}
		inflight := 0
		for _, n := range ns {
			h.snap[n.PrimaryMAC] = n
			if phases[n.Phase].slot {
				inflight++
			}
		}
		h.max = max(h.max, inflight)
		h.mu.Unlock()
		if user != nil {
			user(ns)
		}
	}
	go func() {
		defer close(h.done)
		h.res, h.err = Run(ctx, cfg)
	}()
	h.t.Cleanup(func() { cancel(); <-h.done })
}

// interrupt stops the run as a crash would (the state is what was persisted).
func (h *harness) interrupt() {
	h.stop()
	<-h.done
}

func (h *harness) node(i int) Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snap[mac(i)]
}

func (h *harness) describe() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for m, n := range h.snap {
		fmt.Fprintf(&b, "%s=%s(%s) ", m[len(m)-2:], n.Phase, n.Reason)
	}
	return b.String()
}

// waitFor waits (in real time, for the goroutines to catch up) until cond
// holds. It bounds the wait so a broken state machine fails the test
// instead of hanging it; it is not a speed assertion.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	h.advanceUntil(what, 0, cond)
}

// advanceUntil moves the simulated clock by step until cond holds.
func (h *harness) advanceUntil(what string, step time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("never reached: %s; nodes: %s; run ended: %v", what, h.describe(), h.ended())
		}
		if step > 0 {
			h.clock.Advance(step)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) ended() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *harness) phaseIs(i int, p Phase) func() bool {
	return func() bool { return h.node(i).Phase == p }
}

// wait returns the run's outcome once it ends by itself.
func (h *harness) wait() (Result, error) {
	h.t.Helper()
	h.waitFor("the run ends", h.ended)
	return h.res, h.err
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
