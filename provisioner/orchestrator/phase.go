package orchestrator

import "time"

// Phase is where a node stands in its provisioning. Every state the
// machine can be in is a phase: what can happen in it is read in one
// place, the transition table (table.go; docs/phases.md prints it). The
// JSON and status output use these lower-case names.
type Phase string

const (
	// Pending: waiting for a --parallel slot. Every node starts here, and a
	// reprovisioned node (or one a new run retries) comes back here.
	Pending Phase = "pending"
	// BMCCheck: holds a slot; checking that the BMC answers (it may still
	// be waiting for its DHCP lease).
	BMCCheck Phase = "bmc_check"
	// Reinstall: the BMC answered and the node is to be reinstalled
	// (reprovision, retry): the boot services are asked for a new install
	// generation first, so the next netboot installs rather than booting
	// from disk. Nothing was asked of the node yet, so its own events do
	// not count here.
	Reinstall Phase = "reinstall"
	// BMCReachable: the BMC answered; boot device PXE (next boot) is being
	// set and the node powered on.
	BMCReachable Phase = "bmc_reachable"
	// PXERequested: boot device PXE (next boot) set and the node powered on.
	PXERequested Phase = "pxe_requested"
	// Netbooting: the node's firmware or iPXE asked the boot services (DHCP, TFTP, iPXE, Ignition).
	Netbooting Phase = "netbooting"
	// Installing: the live system called back "installing".
	Installing Phase = "installing"
	// Installed: the live system called back "installed"; boot device disk
	// (persistent) is being set.
	Installed Phase = "installed"
	// FirstBoot: boot device disk set; the installed system is booting and
	// has not called back "booted" yet.
	FirstBoot Phase = "first_boot"
	// AwaitingDiskBoot: the installed system called back "booted" before
	// boot device disk was set; it is being set.
	AwaitingDiskBoot Phase = "awaiting_disk_boot"
	// Booted: the installed system called back "booted" and the BMC boots it from disk.
	Booted Phase = "booted"
	// Ready: the cluster profile finished with this node in the cluster.
	Ready Phase = "ready"
	// Failed: a failure waits for a decision (--on-failure ask) or ended the run (cancel).
	Failed Phase = "failed"
	// Excluding: left out, by the user or after failures; being powered off.
	Excluding Phase = "excluding"
	// Excluded: left out and powered off (or the power off failed, which
	// is not retried); nothing more happens to it in this run.
	Excluded Phase = "excluded"
)

// phaseInfo is what a phase is, apart from its transitions.
type phaseInfo struct {
	// rank orders the phases of the forward path, so that events only
	// move a node forward: an event that arrives late (a DHCP request
	// after the install began) never sends a node back. -1: off the path.
	rank int
	// slot: the node holds one of the --parallel slots; its events count
	// and its timeout runs.
	slot bool
	// op is the operation the phase calls for, started (and repeated
	// after a crash or an error) while the node is in it.
	op opKind
	// watch is an operation repeated every Config.PowerCheck while the
	// node is in the phase, waiting for the node itself: it does not move
	// the node on by succeeding, it notices when nobody will.
	watch opKind
	// limit names the Timeouts field that bounds the phase (slot phases).
	limit string
	// terminal: nothing more for the node's provisioning in this run
	// (an excluded node may still be powered off).
	terminal bool
	doc      string
}

// phaseList is every phase, in the order of the forward path, then the
// phases off it.
var phaseList = []Phase{Pending, BMCCheck, Reinstall, BMCReachable, PXERequested, Netbooting, Installing,
	Installed, FirstBoot, AwaitingDiskBoot, Booted, Ready, Failed, Excluding, Excluded}

var phases = map[Phase]phaseInfo{
	Pending: {rank: 0, doc: "waiting for a --parallel slot"},
	BMCCheck: {rank: 1, slot: true, op: opDiag, limit: "BMC",
		doc: "checking that the BMC answers (it may still be waiting for its DHCP lease)"},
	Reinstall: {rank: 2, slot: true, op: opReinstall, limit: "PXE",
		doc: "asking the boot services for a new install generation (reprovision, retry); the node's own events do not count yet"},
	BMCReachable: {rank: 3, slot: true, op: opPXE, limit: "PXE", doc: "the BMC answered; setting boot device PXE and powering on"},
	PXERequested: {rank: 4, slot: true, limit: "Netboot", doc: "PXE set and powered on; waiting for the firmware's netboot"},
	Netbooting:   {rank: 5, slot: true, limit: "Install", doc: "the node netboots (DHCP, TFTP, iPXE, Ignition)"},
	Installing:   {rank: 6, slot: true, limit: "Installed", doc: "the live system is writing the OS to disk"},
	Installed:    {rank: 7, slot: true, op: opDiskBoot, limit: "Boot", doc: "installed; setting boot device disk (persistent)"},
	FirstBoot: {rank: 8, slot: true, watch: opPowerWatch, limit: "Boot",
		doc: "boot device disk set; waiting for the installed system's booted callback (its power is checked meanwhile: found off, it is powered on once)"},
	AwaitingDiskBoot: {rank: 8, slot: true, op: opDiskBoot, limit: "Boot", doc: "booted before boot device disk was set; setting it"},
	Booted:           {rank: 9, terminal: true, doc: "installed and booting from disk"},
	Ready:            {rank: 10, terminal: true, doc: "in the cluster (the cluster profile finished)"},
	Failed:           {rank: -1, terminal: true, doc: "a failure waits for an answer (--on-failure ask), or ended the run (cancel)"},
	Excluding:        {rank: -1, op: opPowerOff, terminal: true, doc: "left out (--exclude, or after failures); powering off"},
	Excluded:         {rank: -1, terminal: true, doc: "left out and powered off (or the power off failed, which is not retried)"},
}

// Rank is the phase's place on the forward path (pending 0 … ready), -1
// for phases off it (failed, excluding, excluded, or a name this release
// does not know).
func (p Phase) Rank() int {
	if i, ok := phases[p]; ok {
		return i.rank
	}
	return -1
}

// Terminal says whether the orchestrator has nothing more to do for a
// node's provisioning in this phase.
func (p Phase) Terminal() bool { return phases[p].terminal }

// Done says whether a node in this phase is provisioned.
func (p Phase) Done() bool { return p == Booted || p == Ready }

// Left says whether the node is left out: excluding or excluded.
func (p Phase) Left() bool { return p == Excluding || p == Excluded }

// Timeouts bound the phases that hold a slot: how long a node may stay in
// one (counted from entering it) before that counts as a failure. Hosts
// must never hang in a phase forever.
type Timeouts struct {
	BMC       time.Duration // bmc_check (the BMC may still be waiting for its DHCP lease)
	PXE       time.Duration // reinstall, bmc_reachable (ask for a generation; set boot device, power)
	Netboot   time.Duration // pxe_requested → netbooting (firmware POST and PXE)
	Install   time.Duration // netbooting → installing (kernel, initrd, Ignition)
	Installed time.Duration // installing → installed (writing the image)
	Boot      time.Duration // installed, first_boot, awaiting_disk_boot → booted (disk boot, first-boot Ignition)
}

// DefaultTimeouts are generous for real servers, whose POST alone can take
// several minutes.
var DefaultTimeouts = Timeouts{
	BMC:       5 * time.Minute,
	PXE:       3 * time.Minute,
	Netboot:   10 * time.Minute,
	Install:   10 * time.Minute,
	Installed: 30 * time.Minute,
	Boot:      20 * time.Minute,
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	for _, p := range []struct{ v, def *time.Duration }{
		{&t.BMC, &d.BMC}, {&t.PXE, &d.PXE}, {&t.Netboot, &d.Netboot},
		{&t.Install, &d.Install}, {&t.Installed, &d.Installed}, {&t.Boot, &d.Boot},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	return t
}

// limit is the time a node may spend in phase p (0: no limit).
func (t Timeouts) limit(p Phase) time.Duration {
	switch phases[p].limit {
	case "BMC":
		return t.BMC
	case "PXE":
		return t.PXE
	case "Netboot":
		return t.Netboot
	case "Install":
		return t.Install
	case "Installed":
		return t.Installed
	case "Boot":
		return t.Boot
	}
	return 0
}
