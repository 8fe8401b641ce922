package orchestrator

// The transition table: in each phase, what each input does — the next
// phase (or the failure policy's choice), under which guard, with which
// effect. It is the one place that says what can happen to a node; the
// machine (machine.go) only finds the rule and applies it, and
// docs/phases.md is printed from it.

//go:generate go run gen_phases.go -o ../../docs/phases.md

// input is one kind of thing that happens to a node: a free slot, an
// operation's outcome, a boot-services event, a timeout, an answer, a
// command. Its name is the log's cause unless the rule says otherwise.
type input string

const (
	inSlot          input = "slot free"
	inDiagOK        input = "BMC answered"
	inGeneration    input = "new install generation"
	inPXESet        input = "PXE set, powered on"
	inDiskBootSet   input = "boot device disk set"
	inPoweredOff    input = "power off done"
	inOpFailed      input = "operation failed"
	inBMCLease      input = "BMC lease"
	inDHCP          input = "dhcp"
	inTFTP          input = "tftp"
	inIPXEInstall   input = "ipxe install"
	inIPXEDisk      input = "ipxe disk"
	inIPXEOther     input = "ipxe waiting or unknown"
	inIgnInstall    input = "ignition install"
	inIgnBoot       input = "ignition boot"
	inMatchboxInst  input = "ignition matchbox install"
	inMatchboxNode  input = "ignition matchbox node"
	inInstalling    input = "installing callback"
	inInstalled     input = "installed callback"
	inBooted        input = "booted callback"
	inNodeFailed    input = "failed callback"
	inTimeout       input = "timeout"
	inRetry         input = "answer retry"
	inExclude       input = "answer exclude"
	inCancel        input = "answer cancel"
	inAdopt         input = "booted already"
	inUserExclude   input = "--exclude"
	inNewRun        input = "new run"
	inReprovision   input = "reprovision"
	inClusterReady  input = "cluster profile done"
	inPowerOn       input = "power on"
	inPoweredOnOnce input = "found off, powered on"
	inStaysOff      input = "found off again"
)

// inputs is every input, in the order the documentation lists them, with
// what it is.
var inputs = []struct {
	in  input
	doc string
}{
	{inSlot, "a --parallel slot is free"},
	{inDiagOK, "the BMC answered a diagnostic (power state)"},
	{inGeneration, "the boot services made the node's next netboot an install (a new install generation)"},
	{inPXESet, "boot device PXE (next boot only) set, the node powered off if it was on, then on"},
	{inDiskBootSet, "boot device disk (persistent) set"},
	{inPoweredOff, "the node was powered off, or that failed (not retried)"},
	{inOpFailed, "the phase's operation failed (the BMC did not answer, the boot services refused)"},
	{inBMCLease, "the node's BMC got a DHCP lease (any event from the BMC's MAC)"},
	{inDHCP, "the node got a DHCP lease"},
	{inTFTP, "the node fetched a file over TFTP"},
	{inIPXEInstall, "the node was served the installer's iPXE script"},
	{inIPXEDisk, "the node was served the boot-from-disk iPXE script (its target is disk)"},
	{inIPXEOther, "the node was served the waiting or unknown iPXE script"},
	{inIgnInstall, "the node fetched the installer's Ignition config"},
	{inIgnBoot, "the node fetched the installed system's Ignition config"},
	{inMatchboxInst, "the live system fetched matchbox's install config (Lokomotive's installer, which makes no callbacks): the install starts"},
	{inMatchboxNode, "the installed system fetched its own config from matchbox (os=installed) at its first boot: matchbox's installs make no callbacks"},
	{inInstalling, "the live system called back installing"},
	{inInstalled, "the live system called back installed"},
	{inBooted, "the installed system called back booted"},
	{inNodeFailed, "the node called back failed"},
	{inTimeout, "the node stayed in the phase longer than its timeout"},
	{inRetry, "a person answered retry (--on-failure ask)"},
	{inExclude, "a person answered exclude"},
	{inCancel, "a person answered cancel"},
	{inAdopt, "at the start of a run, the boot services report the node booted from disk (target disk)"},
	{inUserExclude, "the run leaves the node out (--exclude)"},
	{inNewRun, "a run starts (bootstrap, reprovision) with the node among its nodes"},
	{inReprovision, "racker reprovision named the node (outside a run)"},
	{inClusterReady, "the cluster profile finished with the node (outside a run)"},
	{inPowerOn, "the power watch found the node on"},
	{inPoweredOnOnce, "the power watch found the node off (twice, 3 s apart) and powered it on: the first time in the phase"},
	{inStaysOff, "the power watch found the node off (twice, 3 s apart) after it had powered it on once in the phase"},
}

// Pseudo-phases of the table.
const (
	// anyPhase as a rule's from: every phase (after the phase's own rules).
	anyPhase Phase = "any phase"
	// byPolicy as a rule's to: the failure policy decides (see fail).
	byPolicy Phase = "failure policy"
)

// rule is one row of the table. A phase's rules for an input are tried in
// order; the first whose guard holds applies. An input with no rule in a
// phase changes nothing (the event is still recorded as the last one).
type rule struct {
	from Phase
	on   input
	when *guard  // nil: always
	to   Phase   // "": the node stays; byPolicy: a failure
	do   *effect // nil: none
	// why is the log's cause and, for a failure, its reason; "" uses the
	// input's own words (the machine may add details, e.g. a timeout's).
	why string
}

// guard is a named condition on the node's record.
type guard struct {
	name string
	ok   func(*Node) bool
}

var (
	reinstallOrdered = &guard{"a reinstall is ordered", func(n *Node) bool { return n.NeedReinstall }}
	noReinstall      = &guard{"no reinstall is ordered", func(n *Node) bool { return !n.NeedReinstall }}
	notLeftByUser    = &guard{"not left out by the user already", func(n *Node) bool { return !(n.Phase.Left() && n.ExcludedByUser) }}
)

const (
	whyFromDisk       = "the boot services answered the netboot with boot-from-disk, not the installer"
	whyDiskOSBoots    = "the node booted the OS on its disk instead of netbooting the installer (PXE boot flag not honoured?)"
	whyMatchboxBooted = "the installed system fetched its matchbox config at its first boot (matchbox's installs make no callbacks)"
	whyStaysOff       = "the node is powered off while it should be booting from disk, and was off again after Racker powered it on once (does anything start it after a reboot?)"
)

// rules is the table. Phases not named for an input ignore it.
var rules = []rule{
	{from: Pending, on: inSlot, to: BMCCheck},
	{from: Pending, on: inAdopt, when: noReinstall, to: Booted, do: recordOS, why: "the boot services report it booted from disk already"},

	{from: BMCCheck, on: inDiagOK, when: reinstallOrdered, to: Reinstall, do: takeOrder},
	{from: BMCCheck, on: inDiagOK, to: BMCReachable},
	{from: BMCCheck, on: inOpFailed, do: retryLater},
	{from: BMCCheck, on: inBMCLease, do: checkNow},
	{from: BMCCheck, on: inTimeout, to: byPolicy},
	{from: BMCCheck, on: inNewRun, do: resume},

	{from: Reinstall, on: inGeneration, to: BMCReachable, do: takeGeneration},
	{from: Reinstall, on: inOpFailed, do: retryLater},
	{from: Reinstall, on: inTimeout, to: byPolicy},
	{from: Reinstall, on: inNewRun, do: resume},

	// The node may be faster than the BMC's answer: its netboot counts.
	{from: BMCReachable, on: inPXESet, to: PXERequested, do: bootPXE},
	{from: BMCReachable, on: inOpFailed, do: retryLater},
	{from: BMCReachable, on: inDHCP, to: Netbooting},
	{from: BMCReachable, on: inTFTP, to: Netbooting},
	{from: BMCReachable, on: inIPXEInstall, to: Netbooting},
	{from: BMCReachable, on: inIgnInstall, to: Netbooting},
	{from: BMCReachable, on: inInstalling, to: Installing},
	{from: BMCReachable, on: inMatchboxInst, to: Installing},
	{from: BMCReachable, on: inInstalled, to: Installed, do: recordOS},
	{from: BMCReachable, on: inNodeFailed, to: byPolicy},
	{from: BMCReachable, on: inTimeout, to: byPolicy},
	{from: BMCReachable, on: inNewRun, do: resume},

	{from: PXERequested, on: inDHCP, to: Netbooting},
	{from: PXERequested, on: inTFTP, to: Netbooting},
	{from: PXERequested, on: inIPXEInstall, to: Netbooting},
	{from: PXERequested, on: inIgnInstall, to: Netbooting},
	{from: PXERequested, on: inIPXEDisk, to: byPolicy, why: whyFromDisk},
	{from: PXERequested, on: inIgnBoot, to: byPolicy, why: whyDiskOSBoots},
	{from: PXERequested, on: inBooted, to: byPolicy, why: whyDiskOSBoots},
	{from: PXERequested, on: inInstalling, to: Installing},
	{from: PXERequested, on: inMatchboxInst, to: Installing},
	{from: PXERequested, on: inInstalled, to: Installed, do: recordOS},
	{from: PXERequested, on: inNodeFailed, to: byPolicy},
	{from: PXERequested, on: inTimeout, to: byPolicy},
	{from: PXERequested, on: inNewRun, do: resume},

	{from: Netbooting, on: inIPXEDisk, to: byPolicy, why: whyFromDisk},
	{from: Netbooting, on: inIgnBoot, to: byPolicy, why: whyDiskOSBoots},
	{from: Netbooting, on: inBooted, to: byPolicy, why: whyDiskOSBoots},
	{from: Netbooting, on: inInstalling, to: Installing},
	// A matchbox install (Lokomotive's profile) calls nothing back: its
	// config's fetch starts the install, and the installed system's first
	// fetch of its own config is its first boot.
	{from: Netbooting, on: inMatchboxInst, to: Installing},
	{from: Netbooting, on: inMatchboxNode, to: AwaitingDiskBoot, do: recordOS, why: whyMatchboxBooted},
	{from: Netbooting, on: inInstalled, to: Installed, do: recordOS},
	{from: Netbooting, on: inNodeFailed, to: byPolicy},
	{from: Netbooting, on: inTimeout, to: byPolicy},
	{from: Netbooting, on: inNewRun, do: resume},

	{from: Installing, on: inInstalled, to: Installed, do: recordOS},
	{from: Installing, on: inMatchboxNode, to: AwaitingDiskBoot, do: recordOS, why: whyMatchboxBooted},
	{from: Installing, on: inNodeFailed, to: byPolicy},
	{from: Installing, on: inTimeout, to: byPolicy},
	{from: Installing, on: inNewRun, do: resume},

	{from: Installed, on: inDiskBootSet, to: FirstBoot, do: bootDisk},
	{from: Installed, on: inBooted, to: AwaitingDiskBoot},
	{from: Installed, on: inOpFailed, do: retryLater},
	{from: Installed, on: inNodeFailed, to: byPolicy},
	{from: Installed, on: inTimeout, to: byPolicy},
	{from: Installed, on: inNewRun, do: resume},

	{from: FirstBoot, on: inBooted, to: Booted},
	// Nobody may start a node whose reboot stopped it (a libvirt domain
	// without a BMC): the power watch powers it on once, then gives up.
	{from: FirstBoot, on: inPowerOn, do: watchAgain},
	{from: FirstBoot, on: inPoweredOnOnce, do: poweredOnOnce, why: "found off while it should be booting from disk; powered on (once)"},
	{from: FirstBoot, on: inStaysOff, to: byPolicy, why: whyStaysOff},
	{from: FirstBoot, on: inOpFailed, do: retryLater},
	{from: FirstBoot, on: inNodeFailed, to: byPolicy},
	{from: FirstBoot, on: inTimeout, to: byPolicy},
	{from: FirstBoot, on: inNewRun, do: resume},

	{from: AwaitingDiskBoot, on: inDiskBootSet, to: Booted, do: bootDisk, why: "booted callback and boot device disk set"},
	{from: AwaitingDiskBoot, on: inOpFailed, do: retryLater},
	{from: AwaitingDiskBoot, on: inNodeFailed, to: byPolicy},
	{from: AwaitingDiskBoot, on: inTimeout, to: byPolicy},
	{from: AwaitingDiskBoot, on: inNewRun, do: resume},

	{from: Booted, on: inClusterReady, to: Ready},

	{from: Failed, on: inRetry, to: Pending, do: restart},
	{from: Failed, on: inExclude, to: Excluding, do: keepReason},
	{from: Failed, on: inCancel, do: cancelRun},
	{from: Failed, on: inNewRun, to: Pending, do: restart, why: "a new run tries again"},

	{from: Excluding, on: inPoweredOff, to: Excluded},
	{from: Excluding, on: inNewRun, to: Pending, do: restart, why: "a new run tries again"},
	{from: Excluded, on: inNewRun, to: Pending, do: restart, why: "a new run tries again"},

	{from: anyPhase, on: inUserExclude, when: notLeftByUser, to: Excluding, do: leftByUser},
	{from: anyPhase, on: inReprovision, to: Pending, do: reprovision, why: "reprovision requested"},
}

// index finds a phase's rules for an input: its own, then anyPhase's.
var index = func() map[Phase]map[input][]rule {
	m := map[Phase]map[input][]rule{}
	add := func(p Phase, r rule) {
		if m[p] == nil {
			m[p] = map[input][]rule{}
		}
		m[p][r.on] = append(m[p][r.on], r)
	}
	for _, r := range rules {
		if r.from != anyPhase {
			add(r.from, r)
		}
	}
	for _, r := range rules {
		if r.from == anyPhase {
			for _, p := range phaseList {
				add(p, r)
			}
			add("", r) // a record made for the occasion (reprovision of a node no run saw)
		}
	}
	return m
}()

// rulesFor returns the rules that may apply to input in in phase p.
func rulesFor(p Phase, in input) []rule { return index[p][in] }
