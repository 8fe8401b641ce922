package orchestrator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// A node found off while it waits for its booted callback (a libvirt
// domain whose guest reboot stopped it, with no BMC to start it again) is
// powered on once; off again, it fails with a reason that says so, long
// before the boot timeout. The fake BMC and node are unit-test doubles.
func TestNodeOffWhileBootingIsPoweredOnOnceThenFailed(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Timeouts = Timeouts{Boot: 20 * time.Minute}
	h.sim(1, api.KindInstalled, 0) // installs, then never calls back booted
	h.start()
	h.waitFor("disk boot set", h.phaseIs(1, FirstBoot))
	if got := h.bmc(1).Actions(); !slices.Equal(got, []bmc.PowerAction{bmc.ActionOn}) {
		t.Fatalf("power actions before the watch: %v", got)
	}

	// The guest's reboot stopped the domain; nothing starts it.
	h.bmc(1).SetPower(bmc.PowerOff)
	h.advanceUntil("the watch powers the node on", time.Second, func() bool { return len(h.bmc(1).Actions()) == 2 })
	if got := h.bmc(1).Actions(); got[1] != bmc.ActionOn {
		t.Fatalf("power actions: %v, want a second on", got)
	}
	if f := h.bmc(1).Flags(); f.Device != bmc.DeviceDisk || !f.Persistent {
		t.Fatalf("boot flags when powered on: %v, want disk persistent", f)
	}
	h.waitFor("the power-on is recorded", func() bool { return h.node(1).PoweredOnWaiting })
	if n := h.node(1); n.Phase != FirstBoot || n.Power != "on" {
		t.Fatalf("after the power-on: phase %s power %q, want first_boot on", n.Phase, n.Power)
	}

	// On, it is left alone.
	h.clock.Advance(2 * time.Minute)
	time.Sleep(50 * time.Millisecond)
	if n := len(h.bmc(1).Actions()); n != 2 {
		t.Fatalf("a node that is on was acted on: %v", h.bmc(1).Actions())
	}

	// Off again: failed (then excluded under --on-failure exclude), not
	// powered on a second time.
	h.bmc(1).SetPower(bmc.PowerOff)
	start := h.clock.Now()
	h.advanceUntil("the node fails", time.Second, func() bool { return h.node(1).Phase.Left() })
	if waited := h.clock.Now().Sub(start); waited > 2*time.Minute {
		t.Errorf("the failure took %s of the 20 min boot timeout", waited)
	}
	n := h.node(1)
	if !strings.Contains(n.Reason, "powered off while it should be booting") || !strings.Contains(n.Reason, "powered it on once") {
		t.Errorf("reason %q does not say the node stayed off after one power-on", n.Reason)
	}
	for _, a := range h.bmc(1).Actions()[2:] {
		if a == bmc.ActionOn || a == bmc.ActionCycle {
			t.Errorf("powered on again: %v", h.bmc(1).Actions())
		}
	}
	log, err := ReadLog(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(log, func(tr Transition) bool { return tr.From == FirstBoot && tr.To == Excluding }); i < 0 {
		t.Errorf("no first_boot → excluding transition in %+v", log)
	}
}

// A node that is off for a moment only (a BMC restarting the domain after
// the guest's reboot) is not powered on: the watch looks again first.
func TestPowerWatchIgnoresAMomentOff(t *testing.T) {
	h := newHarness(t, 1)
	h.sim(1, api.KindInstalled, 0)
	h.start()
	h.waitFor("disk boot set", h.phaseIs(1, FirstBoot))
	h.bmc(1).SetPower(bmc.PowerOff)
	h.clock.Advance(30 * time.Second) // the first check is due
	h.waitFor("the watch found the node off and waits to look again", func() bool { return h.clock.hasTimerAt(h.clock.Now().Add(offConfirm)) })
	h.bmc(1).SetPower(bmc.PowerOn)
	h.clock.Advance(offConfirm)
	h.waitFor("the watch reported back", func() bool { return h.node(1).RetryAt.After(h.clock.Now()) })
	if got := h.bmc(1).Actions(); len(got) != 1 {
		t.Fatalf("power actions %v: a moment off was taken for off", got)
	}
	if n := h.node(1); n.PoweredOnWaiting || n.Phase != FirstBoot || n.Power != "on" {
		t.Fatalf("after a moment off: %+v", n)
	}
}
