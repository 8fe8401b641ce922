package orchestrator

import "time"

// Phase is where a node stands in its provisioning. The JSON and status
// output use these lower-case names.
type Phase string

const (
	// Pending: waiting for a slot (--parallel) or checking the BMC.
	Pending Phase = "pending"
	// BMCReachable: the BMC answered a diagnostic; PXE is being requested.
	BMCReachable Phase = "bmc_reachable"
	// PXERequested: boot device PXE (next boot only) set and the node powered on or cycled.
	PXERequested Phase = "pxe_requested"
	// Netbooting: the node's firmware or iPXE asked the boot services (DHCP, TFTP, iPXE, Ignition).
	Netbooting Phase = "netbooting"
	// Installing: the live system called back "installing".
	Installing Phase = "installing"
	// Installed: the live system called back "installed"; boot device disk is being made persistent.
	Installed Phase = "installed"
	// Booted: the installed system called back "booted" and the BMC boots it from disk.
	Booted Phase = "booted"
	// Ready: the cluster profile finished with this node in the cluster.
	Ready Phase = "ready"
	// Failed: a failure waits for a decision (--on-failure ask) or ended the run (cancel).
	Failed Phase = "failed"
	// Excluded: left out, by the user or after failures; left powered off.
	Excluded Phase = "excluded"
)

// rank orders the forward phases so that events only move a node forward:
// an event that arrives late (a DHCP request after the install began) never
// sends a node back.
var rank = map[Phase]int{
	Pending: 0, BMCReachable: 1, PXERequested: 2, Netbooting: 3,
	Installing: 4, Installed: 5, Booted: 6, Ready: 7,
}

// Terminal says whether the orchestrator has nothing more to do for a
// node in this phase.
func (p Phase) Terminal() bool {
	return p == Booted || p == Ready || p == Excluded || p == Failed
}

// Done says whether a node in this phase is provisioned.
func (p Phase) Done() bool { return p == Booted || p == Ready }

// Timeouts bound each phase: how long a node may stay in it before that
// counts as a failure. Hosts must never hang in a phase forever.
type Timeouts struct {
	BMC       time.Duration // pending → bmc_reachable (the BMC may still be waiting for its DHCP lease)
	PXE       time.Duration // bmc_reachable → pxe_requested (set boot device, power)
	Netboot   time.Duration // pxe_requested → netbooting (firmware POST and PXE)
	Install   time.Duration // netbooting → installing (kernel, initrd, Ignition)
	Installed time.Duration // installing → installed (writing the image)
	Boot      time.Duration // installed → booted (disk boot, first-boot Ignition)
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
	switch p {
	case Pending:
		return t.BMC
	case BMCReachable:
		return t.PXE
	case PXERequested:
		return t.Netboot
	case Netbooting:
		return t.Install
	case Installing:
		return t.Installed
	case Installed:
		return t.Boot
	}
	return 0
}
