package orchestrator

import (
	"testing"
	"time"
)

// newTestRunner is a runner without its loop: the transition functions are
// called directly, so every (phase, input) pair is checked exactly.
func newTestRunner(p Phase) (*runner, *Node) {
	cfg := Config{Clock: newFakeClock(), Policy: Policy{OnFailure: Exclude}, OS: "flatcar current"}
	cfg.defaults()
	s := NodeSpec{PrimaryMAC: mac(1), BMCMAC: mac(101), Hostname: "n1"}
	n := &Node{PrimaryMAC: s.PrimaryMAC, Hostname: "n1", Phase: p, Started: true}
	r := &runner{cfg: cfg, log: cfg.Logger, st: &State{Nodes: map[string]*Node{s.PrimaryMAC: n}},
		specs: map[string]NodeSpec{s.PrimaryMAC: s}, order: []string{s.PrimaryMAC}, byBMC: map[string]string{s.BMCMAC: s.PrimaryMAC},
		inflight: map[string]bool{}, asking: map[string]bool{}}
	return r, n
}

func TestEventTransitions(t *testing.T) {
	cases := []struct {
		from       Phase
		kind, msg  string
		diskSet    bool
		want       Phase
		bootedSeen bool
	}{
		{from: PXERequested, kind: EventDHCP, want: Netbooting},
		{from: PXERequested, kind: EventTFTP, msg: "undionly.kpxe", want: Netbooting},
		{from: PXERequested, kind: EventIPXE, msg: "install", want: Netbooting},
		{from: PXERequested, kind: EventIPXE, msg: "disk", want: Excluded},     // told to boot from disk: a failure
		{from: Netbooting, kind: EventIgnition, msg: "boot", want: Excluded},   // the disk's OS booted instead
		{from: BMCReachable, kind: EventIPXE, msg: "disk", want: BMCReachable}, // before our PXE request: not ours
		{from: PXERequested, kind: EventIgnition, msg: "install", want: Netbooting},
		{from: BMCReachable, kind: EventDHCP, want: Netbooting}, // the node was faster than the BMC's answer
		{from: Pending, kind: EventDHCP, want: Pending},         // not PXE-requested yet: a node booting by itself
		{from: Netbooting, kind: EventDHCP, want: Netbooting},
		{from: Netbooting, kind: EventInstalling, want: Installing},
		{from: PXERequested, kind: EventInstalling, want: Installing},
		{from: Installing, kind: EventDHCP, want: Installing}, // late events never move a node back
		{from: Installing, kind: EventInstalled, want: Installed},
		{from: Netbooting, kind: EventInstalled, want: Installed},
		{from: Installed, kind: EventBooted, want: Installed, bootedSeen: true}, // waits for the disk boot device
		{from: Installed, kind: EventBooted, diskSet: true, want: Booted, bootedSeen: true},
		{from: PXERequested, kind: EventBooted, want: Excluded}, // the old OS on disk booted: PXE failed
		{from: Netbooting, kind: EventBooted, want: Excluded},
		{from: BMCReachable, kind: EventBooted, want: BMCReachable}, // before our PXE request
		{from: Installing, kind: EventBooted, want: Installing},
		{from: Booted, kind: EventDHCP, want: Booted},
		{from: Booted, kind: EventFailed, want: Booted},
		{from: Excluded, kind: EventInstalled, want: Excluded},
		{from: Installing, kind: EventFailed, msg: "disk full", want: Excluded},
		{from: Netbooting, kind: EventFailed, want: Excluded},
		{from: Installing, kind: "machine_seen", want: Installing},
	}
	for _, c := range cases {
		r, n := newTestRunner(c.from)
		n.DiskBootSet = c.diskSet
		r.onEvent(Event{Seq: 7, MAC: "52:54:00:00:00:01", Kind: c.kind, Message: c.msg, Time: time.Unix(5, 0)})
		if n.Phase != c.want || n.BootedSeen != c.bootedSeen {
			t.Errorf("%s + %s %q: phase %s bootedSeen %v, want %s %v", c.from, c.kind, c.msg, n.Phase, n.BootedSeen, c.want, c.bootedSeen)
		}
		if r.st.LastEventSeq != 7 || n.LastEventAt != time.Unix(5, 0) {
			t.Errorf("%s + %s: event not recorded (seq %d)", c.from, c.kind, r.st.LastEventSeq)
		}
	}
}

func TestOpTransitions(t *testing.T) {
	cases := []struct {
		from      Phase
		kind      opKind
		bootedSee bool
		want      Phase
	}{
		{Pending, opDiag, false, BMCReachable},
		{BMCReachable, opPXE, false, PXERequested},
		{Installed, opDiskBoot, false, Installed},
		{Installed, opDiskBoot, true, Booted},
		{Netbooting, opPXE, false, Netbooting}, // a stale answer: the node moved on meanwhile
	}
	for _, c := range cases {
		r, n := newTestRunner(c.from)
		n.BootedSeen = c.bootedSee
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
	r, n := newTestRunner(Pending)
	n.NeedReinstall = true
	if k, _ := r.needOp(n); k != opDiag {
		t.Fatalf("pending node needing a reinstall: next op %s, want diag first", k)
	}
	n.Phase = BMCReachable
	if k, _ := r.needOp(n); k != opReinstall {
		t.Fatalf("BMC reachable, reinstall needed: next op %s", k)
	}
	r.onOp(opResult{mac: n.PrimaryMAC, kind: opReinstall, phase: BMCReachable, generation: 3})
	if n.NeedReinstall || n.InstallGeneration != 3 {
		t.Errorf("after reinstall: %+v", n)
	}
	if k, _ := r.needOp(n); k != opPXE {
		t.Errorf("next op %s, want pxe", k)
	}
}

// The BMC's own DHCP lease cuts the wait before the next diagnostic.
func TestBMCLeaseRetriesAtOnce(t *testing.T) {
	r, n := newTestRunner(Pending)
	n.RetryAt = r.now().Add(time.Hour)
	r.onEvent(Event{Seq: 1, MAC: mac(101), Kind: EventDHCP})
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
		r.onEvent(Event{Seq: 1, MAC: n.PrimaryMAC, Kind: EventInstalled})
		if n.Phase != Installed || n.OS != c.want {
			t.Errorf("config OS %q: node %s with OS %q, want %q", c.cfgOS, n.Phase, n.OS, c.want)
		}
	}
}

// A node that netboots as UEFI gets EFI boot flags from then on, even when
// its type was not declared UEFI.
func TestUEFIFirmwareLearnedFromDHCP(t *testing.T) {
	r, n := newTestRunner(PXERequested)
	r.onEvent(Event{Seq: 1, MAC: n.PrimaryMAC, Kind: EventDHCP, Message: `ip=172.24.213.4 type=request arch=7 user_class="iPXE"`})
	if !n.UEFISeen || n.Phase != Netbooting {
		t.Errorf("after a UEFI DHCP request: %+v", n)
	}
	for msg, want := range map[string]bool{"arch=0": false, "arch=00009": true, "ip=1.2.3.4 type=request": false, "arch=7": true, "arch=6": false} {
		if uefiArch(msg) != want {
			t.Errorf("uefiArch(%q) = %v", msg, !want)
		}
	}
}
