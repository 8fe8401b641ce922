package orchestrator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

func TestHappyPathTwoNodes(t *testing.T) {
	h := newHarness(t, 2)
	h.bmc(2).SetPower(bmc.PowerOn) // node 2 is on already: off, then on
	h.cfg.Policy = Policy{OnFailure: Cancel}
	h.sim(1, "", 0)
	h.sim(2, "", 0)
	h.start()
	res, err := h.wait()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f := res.Failed(); len(f) != 0 {
		t.Fatalf("failed nodes: %+v", f)
	}
	for i, wantActions := range map[int][]bmc.PowerAction{1: {bmc.ActionOn}, 2: {bmc.ActionOff, bmc.ActionOn}} {
		n := res.Nodes[i-1]
		if n.Phase != Booted || n.OS != "testos current" || n.BootDevice != "disk" || n.Power != "on" {
			t.Errorf("node %d: %+v", i, n)
		}
		if n.BMCReachable == nil || !*n.BMCReachable {
			t.Errorf("node %d: BMC reachable not recorded", i)
		}
		b := h.bmc(i)
		if got := b.Actions(); !slices.Equal(got, wantActions) {
			t.Errorf("node %d: power actions %v, want %v", i, got, wantActions)
		}
		f := b.Flags()
		if f.Device != bmc.DeviceDisk || !f.Persistent || f.EFI != (i == 2) {
			t.Errorf("node %d: final boot flags %v, want disk persistent, EFI=%v", i, f, i == 2)
		}
		if !strings.HasPrefix(n.LastEvent, "booted") {
			t.Errorf("node %d: last event %q", i, n.LastEvent)
		}
	}
	log, err := ReadLog(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	var path []Phase
	for _, tr := range log {
		if tr.MAC == mac(1) {
			path = append(path, tr.To)
		}
	}
	want := []Phase{BMCCheck, BMCReachable, PXERequested, Netbooting, Installing, Installed, FirstBoot, Booted}
	if !slices.Equal(path, want) {
		t.Errorf("node 1 transitions %v, want %v", path, want)
	}
	st, err := Load(h.dir)
	if err != nil || st.LastEventSeq == 0 || st.Nodes[mac(1)].Phase != Booted {
		t.Errorf("persisted state: %+v, %v", st, err)
	}
}

// A node stuck in any phase fails when that phase's timeout passes, not
// before, and (under --on-failure exclude) is excluded and powered off.
func TestEveryPhaseTimesOut(t *testing.T) {
	cases := []struct {
		phase     Phase
		stopAfter api.EventKind // what the simulated node does
		dead      bool          // BMC answers nothing
		noBoot    bool          // BMC answers diag but refuses boot flags
		noDisk    bool          // BMC refuses boot device disk only
	}{
		{phase: BMCCheck, dead: true},
		{phase: BMCReachable, noBoot: true},
		{phase: PXERequested, stopAfter: neverNetboots},
		{phase: Netbooting, stopAfter: api.KindDHCP},
		{phase: Installing, stopAfter: api.KindInstalling},
		{phase: Installed, stopAfter: api.KindInstalled, noDisk: true},
		{phase: FirstBoot, stopAfter: api.KindInstalled},
	}
	for _, c := range cases {
		t.Run(string(c.phase), func(t *testing.T) {
			h := newHarness(t, 1)
			h.bmc(1).SetDead(c.dead)
			if c.noBoot || c.noDisk {
				inner := h.cfg.OpenBMC
				h.cfg.OpenBMC = func(ctx context.Context, n NodeSpec) (BMC, error) {
					b, err := inner(ctx, n)
					return refuseBoot{b, c.noDisk}, err
				}
			}
			if c.stopAfter != "" {
				h.sim(1, c.stopAfter, 0)
			}
			limit := DefaultTimeouts.limit(c.phase)
			h.start()
			h.waitFor("phase "+string(c.phase), h.phaseIs(1, c.phase))
			h.clock.Advance(limit - time.Second)
			h.clock.Advance(time.Millisecond) // one more tick for the loop to look
			time.Sleep(20 * time.Millisecond)
			if p := h.node(1).Phase; p != c.phase {
				t.Fatalf("node left %s before its timeout: now %s (%s)", c.phase, p, h.node(1).Reason)
			}
			h.advanceUntil("excluded after the timeout", time.Second, h.phaseIs(1, Excluded))
			res, err := h.wait()
			if err != nil {
				t.Fatal(err)
			}
			n := res.Nodes[0]
			if !strings.Contains(n.Reason, "no progress in phase "+string(c.phase)) {
				t.Errorf("reason %q does not name the phase", n.Reason)
			}
			if len(res.Failed()) != 1 {
				t.Errorf("Failed() = %v, want the node", res.Failed())
			}
			if n.Phase != Excluded {
				t.Error("excluded node: power off not attempted")
			}
			if !c.dead && h.bmc(1).Power() != bmc.PowerOff {
				t.Errorf("excluded node left powered %s", h.bmc(1).Power())
			}
		})
	}
}

// refuseBoot refuses every boot device, or with diskOnly only disk.
type refuseBoot struct {
	BMC
	diskOnly bool
}

func (r refuseBoot) SetBoot(ctx context.Context, dev BootDevice, persistent, efi bool) (bool, error) {
	if r.diskOnly && dev != BootDisk {
		return r.BMC.SetBoot(ctx, dev, persistent, efi)
	}
	return false, errors.New("boot flags refused")
}

func TestFailedInstallIsRetriedThenSucceeds(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Policy = Policy{OnFailure: Retry, Retries: 3, AfterRetries: Exclude}
	h.sim(1, "", 1)
	h.start()
	h.advanceUntil("booted after a retry", time.Second, h.phaseIs(1, Booted))
	res, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := h.boot.Reinstalls(); !slices.Equal(got, []string{mac(1)}) {
		t.Errorf("reinstall requests %v, want one for the retry", got)
	}
	if n := res.Nodes[0]; n.InstallGeneration != 1 || n.Failures != 1 {
		t.Errorf("node after retry: generation %d failures %d", n.InstallGeneration, n.Failures)
	}
	if got := h.bmc(1).Actions(); !slices.Equal(got, []bmc.PowerAction{bmc.ActionOn, bmc.ActionOff, bmc.ActionOn}) {
		t.Errorf("power actions %v, want on, then off and on for the retry", got)
	}
}

func TestRetriesExhaustedThenExcluded(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Policy = Policy{OnFailure: Retry, Retries: 2, AfterRetries: Exclude}
	h.sim(1, "", 100)
	h.start()
	h.advanceUntil("excluded", time.Second, h.phaseIs(1, Excluded))
	res, _ := h.wait()
	n := res.Nodes[0]
	if !strings.Contains(n.Reason, "after 2 retries") || !strings.Contains(n.Reason, "no disk") {
		t.Errorf("reason %q", n.Reason)
	}
	if got := len(h.boot.Reinstalls()); got != 2 {
		t.Errorf("%d reinstall requests, want 2", got)
	}
	want := []bmc.PowerAction{bmc.ActionOn, bmc.ActionOff, bmc.ActionOn, bmc.ActionOff, bmc.ActionOn, bmc.ActionOff}
	if got := h.bmc(1).Actions(); !slices.Equal(got, want) {
		t.Errorf("power actions %v, want %v", got, want)
	}
}

func TestCancelStopsTheRun(t *testing.T) {
	h := newHarness(t, 2)
	h.cfg.Policy = Policy{OnFailure: Cancel}
	h.sim(1, "", 1)
	h.sim(2, api.KindInstalling, 0)
	h.start()
	res, err := h.wait()
	if !errors.Is(err, ErrCancelled) || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("Run error %v, want ErrCancelled naming n1", err)
	}
	if res.Nodes[0].Phase != Failed {
		t.Errorf("n1 %s, want failed", res.Nodes[0].Phase)
	}
	if p := res.Nodes[1].Phase; p.Terminal() {
		t.Errorf("n2 %s: cancel must leave other nodes as they are", p)
	}
	st, _ := Load(h.dir)
	if st.Nodes[mac(1)].Phase != Failed {
		t.Error("failure not persisted")
	}
}

func TestAskDecides(t *testing.T) {
	h := newHarness(t, 1)
	var mu sync.Mutex
	var asked []string
	h.cfg.Policy = Policy{OnFailure: Ask}
	h.cfg.Ask = func(ctx context.Context, n Node, reason string) FailureMode {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, reason)
		if len(asked) == 1 {
			return Retry
		}
		return Exclude
	}
	h.sim(1, "", 100)
	h.start()
	h.advanceUntil("excluded after two answers", time.Second, h.phaseIs(1, Excluded))
	if _, err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || !strings.Contains(asked[0], "no disk") {
		t.Errorf("questions %q", asked)
	}
}

func TestExcludedUpFrontIsPoweredOff(t *testing.T) {
	h := newHarness(t, 2)
	h.bmc(2).SetPower(bmc.PowerOn)
	h.cfg.Nodes[1].Exclude = true
	h.cfg.Nodes[1].ExcludeReason = "--exclude"
	h.sim(1, "", 0)
	h.start()
	res, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	n := res.Nodes[1]
	if n.Phase != Excluded || n.Reason != "--exclude" || !n.ExcludedByUser {
		t.Errorf("excluded node: %+v", n)
	}
	if h.bmc(2).Power() != bmc.PowerOff || h.bmc(2).BootWrites() != 0 {
		t.Errorf("excluded node: power %s, %d boot writes", h.bmc(2).Power(), h.bmc(2).BootWrites())
	}
	if len(res.Failed()) != 0 {
		t.Errorf("a node excluded by the user is not a failure: %v", res.Failed())
	}
}

func TestParallelBound(t *testing.T) {
	h := newHarness(t, 6)
	h.cfg.Parallel = 2
	for i := 1; i <= 6; i++ {
		h.sim(i, "", 0)
	}
	h.start()
	res, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Nodes {
		if n.Phase != Booted {
			t.Errorf("%s: %s", n.Hostname, n.Phase)
		}
	}
	if h.max != 2 {
		t.Errorf("at most %d nodes in flight at once, want exactly the bound 2", h.max)
	}
}

// A run interrupted mid-way resumes: booted nodes get no BMC operation,
// events that happened while nothing ran are applied, the rest goes on.
func TestResumeAfterInterruption(t *testing.T) {
	h := newHarness(t, 3)
	h.sim(1, "", 0)
	h.sim(2, api.KindInstalling, 0)
	h.sim(3, "none", 0)
	h.start()
	h.waitFor("n1 booted, n2 installing, n3 pxe", func() bool {
		return h.node(1).Phase == Booted && h.node(2).Phase == Installing && h.node(3).Phase == PXERequested
	})
	h.interrupt()
	if !errors.Is(h.err, context.Canceled) {
		t.Fatalf("interrupted run: %v", h.err)
	}
	h.boot.Emit(api.Event{MAC: mac(2), Kind: api.KindInstalled}) // while nothing runs
	n1Writes, n1Actions := h.bmc(1).BootWrites(), len(h.bmc(1).Actions())

	h.startSim(2, "", 0, true) // now n2 boots once its boot device is disk
	go func() {                // n3's firmware finally netboots
		for _, k := range []api.EventKind{api.KindDHCP, api.KindInstalling, api.KindInstalled} {
			h.boot.Emit(api.Event{MAC: mac(3), Kind: k})
		}
	}()
	h.start()
	h.waitFor("n3 installed", h.phaseIs(3, FirstBoot))
	h.boot.Emit(api.Event{MAC: mac(3), Kind: api.KindBooted})
	res, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Nodes {
		if n.Phase != Booted {
			t.Errorf("%s: %s", n.Hostname, n.Phase)
		}
	}
	if h.bmc(1).BootWrites() != n1Writes || len(h.bmc(1).Actions()) != n1Actions {
		t.Error("the resumed run touched the BMC of a booted node")
	}
	if len(h.boot.Reinstalls()) != 0 {
		t.Errorf("reinstalls on resume: %v", h.boot.Reinstalls())
	}
}

// The first run skips the journal's history; a node the boot services
// already know as booted is adopted without a reinstall.
func TestFirstRunSkipsHistoryAndAdoptsBootedNodes(t *testing.T) {
	h := newHarness(t, 2)
	for _, k := range []api.EventKind{api.KindInstalling, api.KindInstalled, api.KindBooted} {
		h.boot.Emit(api.Event{MAC: mac(1), Kind: k, Message: "from last year"})
	}
	h.boot.nodes[mac(2)] = &api.Node{PrimaryMAC: mac(2), Target: api.TargetDisk, Phase: api.PhaseBooted, InstallGeneration: 4}
	h.sim(1, api.KindDHCP, 0)
	h.start()
	h.waitFor("n1 netbooting", h.phaseIs(1, Netbooting))
	if n := h.node(2); n.Phase != Booted || n.InstallGeneration != 4 {
		t.Errorf("n2 %+v, want adopted as booted", n)
	}
	if len(h.bmc(2).Actions()) != 0 {
		t.Error("adopted node was power-cycled")
	}
	h.interrupt()
}

func TestLimiterSpacesStarts(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(clk, 2, time.Second)
	start := clk.Now()
	got := make(chan time.Duration, 3)
	for range 3 {
		go func() {
			if err := l.wait(context.Background()); err != nil {
				t.Error(err)
			}
			got <- clk.Now().Sub(start)
			l.done()
		}()
	}
	var seen []time.Duration
	for len(seen) < 3 {
		select {
		case d := <-got:
			seen = append(seen, d)
		case <-time.After(time.Millisecond):
			clk.Advance(100 * time.Millisecond)
		}
	}
	slices.Sort(seen)
	if seen[0] != 0 || seen[1] < time.Second || seen[2] < 2*time.Second {
		t.Errorf("starts at %v, want spaced by 1s", seen)
	}
}

// Reprovisioning a node whose BMC is dead excludes it without leaving a
// wipe-and-install answer at the boot services for its next boot.
func TestReprovisionWithDeadBMCAsksNoReinstall(t *testing.T) {
	h := newHarness(t, 1)
	if err := MarkReprovision(h.dir, []string{mac(1)}, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h.bmc(1).SetDead(true)
	h.start()
	h.advanceUntil("excluded", 10*time.Second, h.phaseIs(1, Excluded))
	if _, err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if got := h.boot.Reinstalls(); len(got) != 0 {
		t.Errorf("reinstall requested for a node whose BMC never answered: %v", got)
	}
	st, _ := Load(h.dir)
	if n := st.Nodes[mac(1)]; !n.WipeAll || !n.NeedReinstall {
		t.Errorf("the reprovision request was lost: %+v", n)
	}
}

func TestDiskBootFlagsFollowTheFirmwareSeen(t *testing.T) {
	h := newHarness(t, 1) // node 1's type is not declared UEFI
	h.start()
	h.waitFor("pxe requested", h.phaseIs(1, PXERequested))
	if h.bmc(1).Flags().EFI {
		t.Fatal("EFI flag before any sign of UEFI firmware")
	}
	h.boot.Emit(api.Event{MAC: mac(1), Kind: api.KindDHCP, ClientArch: []uint16{7}, Message: "ip=10.0.0.2 type=request arch=7"})
	h.boot.Emit(api.Event{MAC: mac(1), Kind: api.KindInstalling})
	h.boot.Emit(api.Event{MAC: mac(1), Kind: api.KindInstalled})
	h.waitFor("disk boot set", h.phaseIs(1, FirstBoot))
	if f := h.bmc(1).Flags(); f.Device != bmc.DeviceDisk || !f.EFI {
		t.Errorf("disk boot flags %v, want EFI after a UEFI netboot", f)
	}
	h.interrupt()
}
