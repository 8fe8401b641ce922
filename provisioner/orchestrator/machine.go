package orchestrator

import (
	"context"
	"fmt"
	"strings"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The transitions. Everything here runs on the loop goroutine, and every
// change marks the state dirty so the loop persists it before acting on it.

// transition moves n to phase to and logs why.
func (r *runner) transition(n *Node, to Phase, cause string) {
	from := n.Phase
	n.Phase = to
	n.PhaseSince = r.now()
	r.dirty = true
	r.pending = append(r.pending, Transition{Time: n.PhaseSince, MAC: n.PrimaryMAC, Hostname: n.Hostname, From: from, To: to, Cause: cause})
	lvl := r.log.Info
	if to == Failed || to == Excluded {
		lvl = r.log.Warn
	}
	lvl("node "+string(to), "node", n.Hostname, "mac", n.PrimaryMAC, "from", string(from), "cause", cause)
}

// prepare brings the persisted records in line with this run's nodes:
// new nodes start pending, --exclude is applied, failures of an earlier
// run get a fresh start, and nodes caught mid-phase by a crash keep their
// phase with a fresh timeout.
func (r *runner) prepare() {
	now := r.now()
	for _, mac := range r.order {
		s := r.specs[mac]
		n := r.st.Nodes[mac]
		if n == nil {
			n = &Node{PrimaryMAC: mac, Phase: Pending, PhaseSince: now}
			r.st.Nodes[mac] = n
			r.dirty = true
		}
		n.BMCMAC, n.Hostname, n.Role, n.Type = s.BMCMAC, s.Hostname, s.Role, s.Type
		switch {
		case s.Exclude:
			if n.Phase != Excluded || !n.ExcludedByUser {
				reason := s.ExcludeReason
				if reason == "" {
					reason = "excluded by the user"
				}
				n.ExcludedByUser, n.PowerOffDone, n.Started = true, false, false
				n.Reason = reason
				r.transition(n, Excluded, reason)
			}
		case n.Phase == Failed || n.Phase == Excluded:
			r.restart(n, "a new run tries again")
			n.Started = false
		case !n.Phase.Terminal() && n.Started:
			n.PhaseSince = now // resumed: a full timeout from now
			r.dirty = true
		}
	}
}

// restart sends n back to pending for a fresh install.
func (r *runner) restart(n *Node, cause string) {
	n.ExcludedByUser = false
	n.NeedReinstall = true
	n.DiskBootSet, n.BootedSeen, n.PowerOffDone = false, false, false
	n.RetryAt = r.now().Add(r.cfg.RetryBackoff)
	if n.Phase == Failed || n.Phase == Excluded {
		n.Failures = 0
		n.RetryAt = r.now()
	}
	n.Reason = ""
	r.transition(n, Pending, cause)
}

// sync reads the boot services' view: the install generation of every
// node, and nodes that are provisioned already (never reinstalled). On the
// very first run it also skips the event journal's history, which belongs
// to earlier installs.
func (r *runner) sync(ctx context.Context) error {
	remote, err := r.cfg.Boot.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("asking the boot services for their nodes: %w", err)
	}
	for _, rn := range remote {
		n := r.st.Nodes[strings.ToLower(rn.PrimaryMAC)]
		if n == nil || r.specs[n.PrimaryMAC].PrimaryMAC == "" {
			continue
		}
		if n.InstallGeneration != rn.InstallGeneration {
			n.InstallGeneration = rn.InstallGeneration
			r.dirty = true
		}
		if n.Phase != Pending || n.Started || n.NeedReinstall {
			continue
		}
		switch {
		case rn.Phase == api.PhaseBooted && rn.Target == api.TargetDisk:
			n.BootedSeen = true
			if r.cfg.OS != "" {
				n.OS = r.cfg.OS
			}
			r.transition(n, Booted, "the boot services report it booted from disk already")
		}
	}
	if r.st.EventsSynced {
		return nil
	}
	for {
		evs, err := r.cfg.Boot.Events(ctx, r.st.LastEventSeq, 0)
		if err != nil {
			return fmt.Errorf("reading the boot services' event journal: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if ev.Seq > r.st.LastEventSeq {
				r.st.LastEventSeq = ev.Seq
			}
		}
	}
	r.st.EventsSynced = true
	r.dirty = true
	return nil
}

// inFlight counts nodes holding a --parallel slot.
func (r *runner) inFlight() int {
	c := 0
	for _, mac := range r.order {
		n := r.st.Nodes[mac]
		if n.Started && !n.Phase.Terminal() {
			c++
		}
	}
	return c
}

// schedule starts waiting nodes while slots are free, and launches the
// operations and questions the nodes' phases call for.
func (r *runner) schedule(ctx context.Context) {
	if r.cancelled != nil {
		return
	}
	free := r.cfg.Parallel - r.inFlight()
	now := r.now()
	for _, mac := range r.order {
		n := r.st.Nodes[mac]
		if n.Phase == Pending && !n.Started && free > 0 {
			free--
			n.Started = true
			n.PhaseSince = now
			r.dirty = true
			r.log.Info("node started", "node", n.Hostname, "mac", n.PrimaryMAC)
		}
		if n.Phase == Failed && !r.asking[mac] {
			r.asking[mac] = true
			go r.ask(ctx, *n) // not waited for: a question on a terminal cannot be interrupted
		}
		if kind, ok := r.needOp(n); ok && !r.inflight[mac] && !now.Before(n.RetryAt) {
			r.inflight[mac] = true
			r.wg.Add(1)
			spec := r.specs[mac]
			spec.EFI = spec.EFI || n.UEFISeen
			go r.runOp(ctx, spec, kind, n.Phase, n.WipeAll)
		}
	}
}

// needOp is the operation a node's phase calls for. It is derived from the
// persisted record, so a crash between deciding and doing repeats the
// operation rather than forgetting it.
func (r *runner) needOp(n *Node) (opKind, bool) {
	switch {
	case n.Phase == Pending && n.Started:
		return opDiag, true
	case n.Phase == BMCReachable && n.NeedReinstall:
		// Only once the BMC answers: a node whose BMC is dead must not be
		// left with a wipe-and-install answer waiting for its next boot.
		return opReinstall, true
	case n.Phase == BMCReachable:
		return opPXE, true
	case n.Phase == Installed && !n.DiskBootSet:
		return opDiskBoot, true
	case n.Phase == Excluded && !n.PowerOffDone:
		return opPowerOff, true
	}
	return "", false
}

// onOp applies an operation's outcome. An outcome for a phase the node has
// left (it failed or moved on meanwhile) only updates what the BMC said.
func (r *runner) onOp(res opResult) {
	n := r.st.Nodes[res.mac]
	if n == nil {
		return
	}
	r.dirty = true
	if res.power != "" {
		n.Power = res.power
	}
	if res.kind != opReinstall && res.kind != opPowerOff {
		ok := res.err == nil
		n.BMCReachable = &ok
	}
	if res.err != nil {
		n.LastError = res.err.Error()
		if res.kind == opPowerOff && n.Phase == Excluded {
			n.PowerOffDone = true
			r.log.Warn("could not power off an excluded node", "node", n.Hostname, "mac", n.PrimaryMAC, "err", res.err)
			return
		}
		n.RetryAt = r.now().Add(r.cfg.RetryBackoff)
		r.log.Warn("operation failed; will retry", "op", string(res.kind), "node", n.Hostname, "mac", n.PrimaryMAC, "phase", string(n.Phase), "err", res.err)
		return
	}
	n.LastError = ""
	if n.Phase != res.phase {
		return
	}
	switch res.kind {
	case opReinstall:
		n.NeedReinstall = false
		n.InstallGeneration = res.generation
	case opDiag:
		r.transition(n, BMCReachable, "BMC answered")
	case opPXE:
		n.BootDevice = string(BootPXE)
		if !res.verified {
			r.log.Warn("BMC cannot report boot flags back; PXE request not verified", "node", n.Hostname, "mac", n.PrimaryMAC)
		}
		r.transition(n, PXERequested, "boot device PXE (next boot) set, power "+res.action)
	case opDiskBoot:
		n.DiskBootSet = true
		n.BootDevice = string(BootDisk)
		if n.BootedSeen {
			r.transition(n, Booted, "booted callback and boot device disk set")
		}
	case opPowerOff:
		n.PowerOffDone = true
	}
}

// onEvent applies one boot-services event. Events only move a node
// forward, and only from the phases where they mean progress: a "booted"
// from an old OS on disk before the install never counts.
func (r *runner) onEvent(ev api.Event) {
	if ev.Seq > r.st.LastEventSeq {
		r.st.LastEventSeq = ev.Seq
		r.dirty = true
	}
	mac := strings.ToLower(ev.MAC)
	if owner, ok := r.byBMC[mac]; ok {
		// The BMC got its lease: check it now rather than after the backoff.
		if n := r.st.Nodes[owner]; n != nil && n.Phase == Pending && n.Started {
			n.RetryAt = r.now()
		}
		return
	}
	n := r.st.Nodes[mac]
	if n == nil {
		return
	}
	n.LastEvent = strings.TrimSpace(string(ev.Kind) + " " + ev.Message) // for people
	n.LastEventAt = ev.Time
	r.dirty = true
	if _, ours := r.specs[mac]; !ours || !n.Started || n.Phase.Terminal() {
		return
	}
	cur := rank[n.Phase]
	if ev.Kind == api.KindDHCP && ev.UEFI() && !n.UEFISeen {
		n.UEFISeen = true
		if !r.specs[mac].EFI {
			r.log.Warn("node netboots with UEFI firmware but its type is not declared UEFI (--uefi-types); using EFI boot flags from now on",
				"node", n.Hostname, "mac", n.PrimaryMAC, "type", n.Type)
		}
	}
	install := ev.Script == api.ScriptInstall || ev.Ignition == api.IgnitionInstall
	switch ev.Kind {
	case api.KindDHCP, api.KindTFTP:
		if n.Phase == BMCReachable || n.Phase == PXERequested {
			r.transition(n, Netbooting, string(ev.Kind))
		}
	case api.KindIPXE, api.KindIgnition:
		switch {
		case (n.Phase == BMCReachable || n.Phase == PXERequested) && install:
			r.transition(n, Netbooting, string(ev.Kind)+" install")
		case n.Phase == PXERequested || n.Phase == Netbooting:
			// Netbooting the installer went wrong: told to boot from disk,
			// or already fetching the installed system's config.
			if ev.Kind == api.KindIPXE && ev.Script == api.ScriptDisk {
				r.fail(n, "the boot services answered the netboot with boot-from-disk, not the installer")
			} else if ev.Kind == api.KindIgnition && ev.Ignition == api.IgnitionBoot {
				r.fail(n, "the node booted the OS on its disk instead of netbooting the installer (PXE boot flag not honoured?)")
			}
		}
	case api.KindInstalling:
		if cur >= rank[BMCReachable] && cur < rank[Installing] {
			r.transition(n, Installing, "installing callback")
		}
	case api.KindInstalled:
		if cur >= rank[BMCReachable] && cur < rank[Installed] {
			n.DiskBootSet, n.BootedSeen = false, false
			if r.cfg.OS != "" {
				n.OS = r.cfg.OS
			}
			r.transition(n, Installed, "installed callback")
		}
	case api.KindBooted:
		if n.Phase == PXERequested || n.Phase == Netbooting {
			r.fail(n, "the node booted the OS on its disk instead of netbooting the installer (PXE boot flag not honoured?)")
			return
		}
		if n.Phase == Installed {
			n.BootedSeen = true
			if n.DiskBootSet {
				r.transition(n, Booted, "booted callback")
			}
		}
	case api.KindFailed:
		if cur >= rank[BMCReachable] {
			r.fail(n, "the node reported a failure: "+ev.Message)
		}
	}
}

// checkTimeouts fails nodes that stayed in a phase too long.
func (r *runner) checkTimeouts() {
	now := r.now()
	for _, mac := range r.order {
		n := r.st.Nodes[mac]
		if !n.Started || n.Phase.Terminal() {
			continue
		}
		limit := r.cfg.Timeouts.limit(n.Phase)
		if limit <= 0 || now.Sub(n.PhaseSince) <= limit {
			continue
		}
		reason := fmt.Sprintf("no progress in phase %s for %s", n.Phase, limit)
		if n.LastError != "" {
			reason += ": " + n.LastError
		}
		r.fail(n, reason)
	}
}

// fail applies the failure policy to n.
func (r *runner) fail(n *Node, reason string) {
	n.Failures++
	n.LastError = reason
	mode := r.cfg.Policy.OnFailure
	if mode == Retry {
		if n.Failures <= r.cfg.Policy.Retries {
			r.restart(n, fmt.Sprintf("retry %d/%d after: %s", n.Failures, r.cfg.Policy.Retries, reason))
			n.Reason = reason
			return
		}
		mode = r.cfg.Policy.AfterRetries
		reason = fmt.Sprintf("%s (after %d retries)", reason, r.cfg.Policy.Retries)
	}
	if mode == Ask && r.cfg.Ask == nil {
		mode = Exclude
	}
	n.Reason = reason
	switch mode {
	case Exclude, Retry:
		r.exclude(n, reason)
	case Ask:
		r.transition(n, Failed, reason)
	default:
		r.transition(n, Failed, reason)
		r.cancelled = fmt.Errorf("%w: node %s (%s): %s", ErrCancelled, n.Hostname, n.PrimaryMAC, reason)
	}
}

func (r *runner) exclude(n *Node, reason string) {
	n.PowerOffDone = false
	n.RetryAt = r.now()
	n.Reason = reason
	r.transition(n, Excluded, reason)
}

// onAnswer applies a human's decision about a failed node.
func (r *runner) onAnswer(mac string, d FailureMode) {
	n := r.st.Nodes[mac]
	if n == nil || n.Phase != Failed {
		return
	}
	switch d {
	case Retry:
		reason := n.Reason
		r.restart(n, "retry (answer to: "+reason+")")
		n.Started = false // back in the queue for a --parallel slot
	case Exclude:
		r.exclude(n, n.Reason)
	default:
		r.cancelled = fmt.Errorf("%w: node %s (%s): %s", ErrCancelled, n.Hostname, n.PrimaryMAC, n.Reason)
	}
}
