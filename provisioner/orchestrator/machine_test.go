package orchestrator

import (
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// newTestRunner is a runner without its loop: the input functions are
// called directly, so every (phase, input) pair is checked exactly.
func newTestRunner(p Phase) (*runner, *Node) {
	cfg := Config{Clock: newFakeClock(), Policy: Policy{OnFailure: Exclude}, OS: "flatcar current"}
	cfg.defaults()
	s := NodeSpec{PrimaryMAC: mac(1), BMCMAC: mac(101), Hostname: "n1"}
	n := &Node{PrimaryMAC: s.PrimaryMAC, Hostname: "n1", Phase: p}
	r := &runner{cfg: cfg, st: &State{Nodes: map[string]*Node{s.PrimaryMAC: n}},
		specs: map[string]NodeSpec{s.PrimaryMAC: s}, order: []string{s.PrimaryMAC}, byBMC: map[string]string{s.BMCMAC: s.PrimaryMAC},
		inflight: map[string]opKind{}, asking: map[string]bool{}}
	r.machine = machine{cfg: &r.cfg, now: cfg.Clock.Now, log: cfg.Logger}
	return r, n
}

func TestEventTransitions(t *testing.T) {
	cases := []struct {
		from Phase
		ev   api.Event
		want Phase
	}{
		{from: PXERequested, ev: api.Event{Kind: api.KindDHCP}, want: Netbooting},
		{from: PXERequested, ev: api.Event{Kind: api.KindTFTP, Message: "undionly.kpxe"}, want: Netbooting},
		{from: PXERequested, ev: api.Event{Kind: api.KindIPXE, Script: api.ScriptInstall}, want: Netbooting},
		{from: PXERequested, ev: api.Event{Kind: api.KindIPXE, Script: api.ScriptDisk}, want: Excluding},       // told to boot from disk: a failure
		{from: Netbooting, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionBoot}, want: Excluding}, // the disk's OS booted instead
		{from: BMCReachable, ev: api.Event{Kind: api.KindIPXE, Script: api.ScriptDisk}, want: BMCReachable},    // before our PXE request: not ours
		{from: PXERequested, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionInstall}, want: Netbooting},
		{from: BMCReachable, ev: api.Event{Kind: api.KindDHCP}, want: Netbooting}, // the node was faster than the BMC's answer
		{from: BMCCheck, ev: api.Event{Kind: api.KindDHCP}, want: BMCCheck},       // not PXE-requested yet: a node booting by itself
		{from: Netbooting, ev: api.Event{Kind: api.KindDHCP}, want: Netbooting},
		{from: Netbooting, ev: api.Event{Kind: api.KindInstalling}, want: Installing},
		{from: PXERequested, ev: api.Event{Kind: api.KindInstalling}, want: Installing},
		{from: Installing, ev: api.Event{Kind: api.KindDHCP}, want: Installing}, // late events never move a node back
		{from: Installing, ev: api.Event{Kind: api.KindInstalled}, want: Installed},
		{from: Netbooting, ev: api.Event{Kind: api.KindInstalled}, want: Installed},
		{from: Installed, ev: api.Event{Kind: api.KindBooted}, want: AwaitingDiskBoot}, // waits for the disk boot device
		{from: FirstBoot, ev: api.Event{Kind: api.KindBooted}, want: Booted},
		{from: PXERequested, ev: api.Event{Kind: api.KindBooted}, want: Excluding}, // the old OS on disk booted: PXE failed
		{from: Netbooting, ev: api.Event{Kind: api.KindBooted}, want: Excluding},
		{from: BMCReachable, ev: api.Event{Kind: api.KindBooted}, want: BMCReachable}, // before our PXE request
		{from: Installing, ev: api.Event{Kind: api.KindBooted}, want: Installing},
		{from: Booted, ev: api.Event{Kind: api.KindDHCP}, want: Booted},
		{from: Booted, ev: api.Event{Kind: api.KindFailed}, want: Booted},
		{from: Excluded, ev: api.Event{Kind: api.KindInstalled}, want: Excluded},
		{from: Installing, ev: api.Event{Kind: api.KindFailed, Message: "disk full"}, want: Excluding},
		{from: Netbooting, ev: api.Event{Kind: api.KindFailed}, want: Excluding},
		{from: Installing, ev: api.Event{Kind: api.KindMachineSeen}, want: Installing},
		// A matchbox install (Lokomotive) calls nothing back: the installed
		// system's fetch of its os=installed config is its first boot.
		{from: PXERequested, ev: api.Event{Kind: api.KindIPXE, Script: api.ScriptMatchbox}, want: Netbooting},
		{from: Netbooting, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxInstall}, want: Installing},
		{from: PXERequested, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxInstall}, want: Installing},
		{from: Installing, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxNode}, want: AwaitingDiskBoot},
		{from: Netbooting, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxNode}, want: AwaitingDiskBoot},
		{from: PXERequested, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxNode}, want: PXERequested}, // not this netboot's
		{from: Booted, ev: api.Event{Kind: api.KindIgnition, Ignition: api.IgnitionMatchboxNode}, want: Booted},
		// Messages are for people: without the typed detail nothing moves.
		{from: PXERequested, ev: api.Event{Kind: api.KindIPXE, Message: "install"}, want: PXERequested},
		{from: Netbooting, ev: api.Event{Kind: api.KindIPXE, Message: "disk"}, want: Netbooting},
	}
	for _, c := range cases {
		r, n := newTestRunner(c.from)
		ev := c.ev
		ev.Seq, ev.MAC, ev.Time = 7, "52:54:00:00:00:01", time.Unix(5, 0)
		r.onEvent(ev)
		if n.Phase != c.want {
			t.Errorf("%s + %+v: phase %s, want %s", c.from, c.ev, n.Phase, c.want)
		}
		if r.st.LastEventSeq != 7 || n.LastEventAt != time.Unix(5, 0) {
			t.Errorf("%s + %+v: event not recorded (seq %d)", c.from, c.ev, r.st.LastEventSeq)
		}
	}
}

func TestOpTransitions(t *testing.T) {
	cases := []struct {
		from Phase
		kind opKind
		want Phase
	}{
		{BMCCheck, opDiag, BMCReachable},
		{BMCReachable, opPXE, PXERequested},
		{Installed, opDiskBoot, FirstBoot},     // waits for the booted callback
		{AwaitingDiskBoot, opDiskBoot, Booted}, // the booted callback came first
		{Netbooting, opPXE, Netbooting},        // a stale answer: the node moved on meanwhile
	}
	for _, c := range cases {
		r, n := newTestRunner(c.from)
		launched := c.from
		if c.kind == opPXE {
			launched = BMCReachable
		}
		r.onOp(opResult{mac: n.PrimaryMAC, kind: c.kind, phase: launched, power: "on", action: "on", verified: true})
		if n.Phase != c.want {
			t.Errorf("%s + %s: %s, want %s", c.from, c.kind, n.Phase, c.want)
		}
	}
	// A reinstall answer records the install generation and clears the need.
	// The BMC is checked first; the reinstall is asked for only then.
	r, n := newTestRunner(BMCCheck)
	n.NeedReinstall = true
	if k := phases[n.Phase].op; k != opDiag {
		t.Fatalf("node needing a reinstall: first op %s, want diag", k)
	}
	r.onOp(opResult{mac: n.PrimaryMAC, kind: opDiag, phase: BMCCheck, power: "off"})
	if k := phases[n.Phase].op; n.Phase != Reinstall || k != opReinstall {
		t.Fatalf("BMC reachable, reinstall needed: %s, next op %s", n.Phase, k)
	}
	r.onOp(opResult{mac: n.PrimaryMAC, kind: opReinstall, phase: Reinstall, generation: 3})
	if n.NeedReinstall || n.InstallGeneration != 3 {
		t.Errorf("after reinstall: %+v", n)
	}
	if k := phases[n.Phase].op; k != opPXE {
		t.Errorf("next op %s, want pxe", k)
	}
}

// The BMC's own DHCP lease cuts the wait before the next diagnostic.
func TestBMCLeaseRetriesAtOnce(t *testing.T) {
	r, n := newTestRunner(BMCCheck)
	n.RetryAt = r.now().Add(time.Hour)
	r.onEvent(api.Event{Seq: 1, MAC: mac(101), Kind: api.KindDHCP})
	if n.RetryAt.After(r.now()) {
		t.Error("BMC lease did not bring the next BMC check forward")
	}
}

// Without a known OS (a running racker serve does not say), a reinstalled
// node keeps its earlier record; with one, the record is replaced.
func TestInstalledRecordsTheOS(t *testing.T) {
	for _, c := range []struct{ cfgOS, want string }{{"", "testos current"}, {"flatcar 4081.2.0", "flatcar 4081.2.0"}} {
		r, n := newTestRunner(Installing)
		r.cfg.OS = c.cfgOS
		n.OS = "testos current"
		r.onEvent(api.Event{Seq: 1, MAC: n.PrimaryMAC, Kind: api.KindInstalled})
		if n.Phase != Installed || n.OS != c.want {
			t.Errorf("config OS %q: node %s with OS %q, want %q", c.cfgOS, n.Phase, n.OS, c.want)
		}
	}
}

// A node that netboots as UEFI gets EFI boot flags from then on, even when
// its type was not declared UEFI.
func TestUEFIFirmwareLearnedFromDHCP(t *testing.T) {
	r, n := newTestRunner(PXERequested)
	r.onEvent(api.Event{Seq: 1, MAC: n.PrimaryMAC, Kind: api.KindDHCP, ClientArch: []uint16{7}, Message: `ip=172.24.213.4 type=request arch=7 user_class="iPXE"`})
	if !n.UEFISeen || n.Phase != Netbooting {
		t.Errorf("after a UEFI DHCP request: %+v", n)
	}
	for _, c := range []struct {
		arch []uint16
		want bool
	}{{[]uint16{0}, false}, {[]uint16{9}, true}, {nil, false}, {[]uint16{7}, true}, {[]uint16{6}, false}, {[]uint16{0, 7}, false}} {
		r, n := newTestRunner(PXERequested)
		r.onEvent(api.Event{Seq: 1, MAC: n.PrimaryMAC, Kind: api.KindDHCP, ClientArch: c.arch})
		if n.UEFISeen != c.want {
			t.Errorf("DHCP client arch %v: UEFI seen %v, want %v", c.arch, n.UEFISeen, c.want)
		}
	}
}
