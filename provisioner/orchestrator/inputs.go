package orchestrator

import (
	"context"
	"fmt"
	"strings"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Where the inputs of the table come from: the run's start (prepare,
// sync), the free slots and the operations (schedule, onOp), the boot
// services' events (onEvent), the clock (checkTimeouts) and people
// (onAnswer). These functions only translate; the table decides.

// prepare brings the persisted records in line with this run's nodes:
// new nodes start pending, --exclude is applied, failures of an earlier
// run get a fresh start, and nodes caught mid-phase by a crash keep their
// phase with a fresh timeout.
func (r *runner) prepare() {
	for _, mac := range r.order {
		s := r.specs[mac]
		n := r.st.Nodes[mac]
		if n == nil {
			n = &Node{PrimaryMAC: mac, Phase: Pending, PhaseSince: r.now()}
			r.st.Nodes[mac] = n
			r.touch(n)
		}
		if n.BMCMAC != s.BMCMAC || n.Hostname != s.Hostname || n.Role != s.Role || n.Type != s.Type {
			n.BMCMAC, n.Hostname, n.Role, n.Type = s.BMCMAC, s.Hostname, s.Role, s.Type
			r.touch(n)
		}
		if s.Exclude {
			reason := s.ExcludeReason
			if reason == "" {
				reason = "excluded by the user"
			}
			r.step(n, inUserExclude, happening{cause: reason})
			continue
		}
		r.step(n, inNewRun, happening{})
	}
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
			r.touch(n)
		}
		if rn.Phase == api.PhaseBooted && rn.Target == api.TargetDisk {
			r.step(n, inAdopt, happening{})
		}
	}
	if r.st.EventsSynced {
		return nil
	}
	for {
		evs, err := r.cfg.Boot.EventsIn(ctx, r.st.EventEpoch, r.st.LastEventSeq, 0)
		if err != nil {
			return fmt.Errorf("reading the boot services' event journal: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			r.followEpoch(ev)
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
		if phases[r.st.Nodes[mac].Phase].slot {
			c++
		}
	}
	return c
}

// schedule gives free slots to pending nodes, and returns the operations
// and questions the nodes' phases call for, to be started once the state
// that calls for them is durable (ok), or dropped when it cannot be made so
// (the run then ends).
func (r *runner) schedule(ctx context.Context) (launch []func(ok bool)) {
	if r.cancelled != nil {
		return nil
	}
	free := r.cfg.Parallel - r.inFlight()
	now := r.now()
	for _, mac := range r.order {
		n := r.st.Nodes[mac]
		if n.Phase == Pending && free > 0 && r.step(n, inSlot, happening{}) {
			free--
		}
		if n.Phase == Failed && !r.asking[mac] {
			r.asking[mac] = true
			node := *n
			// not waited for: a question on a terminal cannot be interrupted
			launch = append(launch, func(ok bool) {
				if ok {
					go r.ask(ctx, node)
				}
			})
		}
		kind := phases[n.Phase].op
		if kind == "" && r.cfg.PowerCheck > 0 {
			kind = phases[n.Phase].watch
		}
		if _, busy := r.inflight[mac]; kind != "" && !busy && !now.Before(n.RetryAt) {
			r.inflight[mac] = kind
			r.wg.Add(1)
			spec := r.specs[mac]
			spec.EFI = spec.EFI || n.UEFISeen
			phase, args := n.Phase, opArgs{wipeAll: n.WipeAll, powerOn: !n.PoweredOnWaiting}
			launch = append(launch, func(ok bool) {
				if ok {
					go r.runOp(ctx, spec, kind, phase, args)
				} else {
					r.wg.Done()
				}
			})
		}
	}
	return launch
}

// onOp applies an operation's outcome. What the BMC said is always
// recorded; the outcome itself only counts while the node's phase still
// calls for that operation (it may have failed or moved on meanwhile).
func (r *runner) onOp(res opResult) {
	n := r.st.Nodes[res.mac]
	if n == nil {
		return
	}
	r.touch(n)
	if res.power != "" {
		n.Power = res.power
	}
	if res.kind != opReinstall && res.kind != opPowerOff {
		ok := res.err == nil
		n.BMCReachable = &ok
	}
	n.LastError = ""
	if res.err != nil {
		n.LastError = res.err.Error()
	}
	if phases[n.Phase].op != res.kind && phases[n.Phase].watch != res.kind {
		return
	}
	h := happening{op: res}
	switch {
	case res.kind == opPowerOff:
		if res.err != nil {
			r.log.Warn("could not power off an excluded node", "node", n.Hostname, "mac", n.PrimaryMAC, "err", res.err)
		}
		r.step(n, inPoweredOff, h)
	case res.err != nil:
		r.step(n, inOpFailed, h)
	case res.kind == opDiag:
		r.step(n, inDiagOK, h)
	case res.kind == opReinstall:
		r.step(n, inGeneration, h)
	case res.kind == opPXE:
		if res.generation > n.InstallGeneration { // the window began a new install attempt
			n.InstallGeneration = res.generation
		}
		h.cause = "boot device PXE (next boot) set, power " + res.action
		r.step(n, inPXESet, h)
	case res.kind == opDiskBoot:
		r.step(n, inDiskBootSet, h)
	case res.kind == opPowerWatch && res.action == "on":
		r.step(n, inPoweredOnOnce, h)
	case res.kind == opPowerWatch && res.power == "off":
		r.step(n, inStaysOff, h)
	case res.kind == opPowerWatch:
		r.step(n, inPowerOn, h)
	}
}

// followEpoch keeps the cursor in the event's journal: a new epoch means
// the journal started anew (its file was deleted, sequence numbers count
// from 1 again), so the cursor starts again from its beginning instead of
// waiting for numbers the new journal reaches only much later.
func (r *runner) followEpoch(ev api.Event) {
	if ev.Epoch == "" || ev.Epoch == r.st.EventEpoch {
		return
	}
	if r.st.EventEpoch != "" {
		r.log.Warn("the boot services' event journal started anew; reading it from its start",
			"old_epoch", r.st.EventEpoch, "epoch", ev.Epoch, "last_seq", r.st.LastEventSeq)
		r.st.LastEventSeq = 0
	}
	r.st.EventEpoch = ev.Epoch
	r.dirty = true
}

// onEvent applies one boot-services event, by its typed fields.
func (r *runner) onEvent(ev api.Event) {
	r.followEpoch(ev)
	if ev.Seq > r.st.LastEventSeq {
		r.st.LastEventSeq = ev.Seq
		r.dirty = true
	}
	if ev.Unsolicited {
		return // a node's MAC outside its boot window: anyone can send it
	}
	mac := strings.ToLower(ev.MAC)
	if owner, ok := r.byBMC[mac]; ok {
		if n := r.st.Nodes[owner]; n != nil {
			r.step(n, inBMCLease, happening{})
		}
		return
	}
	n := r.st.Nodes[mac]
	if n == nil {
		return
	}
	n.LastEvent = strings.TrimSpace(string(ev.Kind) + " " + ev.Message) // for people
	n.LastEventAt = ev.Time
	r.touch(n)
	if _, ours := r.specs[mac]; !ours || !phases[n.Phase].slot {
		return
	}
	if ev.Kind == api.KindDHCP && ev.UEFI() && !n.UEFISeen {
		n.UEFISeen = true
		if !r.specs[mac].EFI {
			r.log.Warn("node netboots with UEFI firmware but its type is not declared UEFI (--uefi-types); using EFI boot flags from now on",
				"node", n.Hostname, "mac", n.PrimaryMAC, "type", n.Type)
		}
	}
	in, ok := eventInput(ev)
	if !ok {
		return
	}
	h := happening{}
	if in == inNodeFailed {
		h.cause = "the node reported a failure: " + ev.Message
	}
	r.step(n, in, h)
}

// eventInput is the input an event is, from its kind and typed details.
func eventInput(ev api.Event) (input, bool) {
	switch ev.Kind {
	case api.KindDHCP:
		return inDHCP, true
	case api.KindTFTP:
		return inTFTP, true
	case api.KindIPXE:
		switch ev.Script {
		case api.ScriptInstall, api.ScriptMatchbox: // matchbox's profile installs it
			return inIPXEInstall, true
		case api.ScriptDisk:
			return inIPXEDisk, true
		}
		return inIPXEOther, true
	case api.KindIgnition:
		switch ev.Ignition {
		case api.IgnitionInstall:
			return inIgnInstall, true
		case api.IgnitionBoot:
			return inIgnBoot, true
		case api.IgnitionMatchboxInstall:
			return inMatchboxInst, true
		case api.IgnitionMatchboxNode:
			return inMatchboxNode, true
		}
	case api.KindInstalling:
		return inInstalling, true
	case api.KindInstalled:
		return inInstalled, true
	case api.KindBooted:
		return inBooted, true
	case api.KindFailed:
		return inNodeFailed, true
	}
	return "", false
}

// checkTimeouts fails nodes that stayed in a phase too long.
func (r *runner) checkTimeouts() {
	now := r.now()
	for _, mac := range r.order {
		n := r.st.Nodes[mac]
		limit := r.cfg.Timeouts.limit(n.Phase)
		if limit <= 0 || now.Sub(n.PhaseSince) <= limit {
			continue
		}
		reason := fmt.Sprintf("no progress in phase %s for %s", n.Phase, limit)
		if n.LastError != "" {
			reason += ": " + n.LastError
		}
		r.step(n, inTimeout, happening{cause: reason})
	}
}

// onAnswer applies a person's decision about a failed node.
func (r *runner) onAnswer(mac string, d FailureMode) {
	n := r.st.Nodes[mac]
	if n == nil {
		return
	}
	switch d {
	case Retry:
		r.step(n, inRetry, happening{cause: "retry (answer to: " + n.Reason + ")"})
	case Exclude:
		r.step(n, inExclude, happening{cause: n.Reason})
	default:
		r.step(n, inCancel, happening{})
	}
}
