package orchestrator

import (
	"fmt"
	"log/slog"
	"time"
)

// The machine applies the transition table (table.go) to nodes. Every
// change of phase goes through transition, which logs it; what a change
// does besides is an effect named in the table. Everything here runs on
// the loop goroutine (or under the provisioning lock, outside a run), and
// every change marks the state dirty so the loop persists it before
// acting on it.

type machine struct {
	cfg *Config
	now func() time.Time
	log *slog.Logger

	logged    []Transition // not yet appended to LogFile
	dirty     bool
	touched   map[string]bool // nodes changed since the last commit, by primary MAC
	cancelled error           // set when a failure or an answer ends the run
}

// touch marks n changed: the next commit writes its record.
func (m *machine) touch(n *Node) {
	m.dirty = true
	if m.touched == nil {
		m.touched = map[string]bool{}
	}
	m.touched[n.PrimaryMAC] = true
}

// happening is what came with an input: the words for the log, the
// operation's outcome or the event.
type happening struct {
	cause string
	op    opResult
}

// step applies in to n: the first of the phase's rules for it whose guard
// holds. It reports whether one applied.
func (m *machine) step(n *Node, in input, h happening) bool {
	for _, r := range rulesFor(n.Phase, in) {
		if r.when != nil && !r.when.ok(n) {
			continue
		}
		cause := r.why
		if cause == "" {
			cause = h.cause
		}
		if cause == "" {
			cause = string(in)
		}
		m.touch(n)
		if r.do != nil {
			r.do.fn(m, n, cause, h)
		}
		switch r.to {
		case "":
		case byPolicy:
			m.fail(n, cause)
		default:
			m.transition(n, r.to, cause)
		}
		return true
	}
	return false
}

// transition moves n to phase to and logs why.
func (m *machine) transition(n *Node, to Phase, cause string) {
	from := n.Phase
	n.Phase = to
	n.PhaseSince = m.now()
	m.touch(n)
	m.logged = append(m.logged, Transition{Time: n.PhaseSince, MAC: n.PrimaryMAC, Hostname: n.Hostname, From: from, To: to, Cause: cause})
	lvl := m.log.Info
	if to == Failed || to == Excluding {
		lvl = m.log.Warn
	}
	lvl("node "+string(to), "node", n.Hostname, "mac", n.PrimaryMAC, "from", string(from), "cause", cause)
}

// fail applies the failure policy to n: retry (the node keeps its slot,
// a reinstall is ordered, the BMC is checked again after the backoff),
// exclude (power off, left out), ask (failed, a person decides) or cancel
// (failed, the run ends).
func (m *machine) fail(n *Node, reason string) {
	n.Failures++
	n.LastError = reason
	mode := m.cfg.Policy.OnFailure
	if mode == Retry {
		if n.Failures <= m.cfg.Policy.Retries {
			n.NeedReinstall = true
			n.RetryAt = m.now().Add(m.cfg.RetryBackoff)
			n.Reason = reason
			m.transition(n, BMCCheck, fmt.Sprintf("retry %d/%d after: %s", n.Failures, m.cfg.Policy.Retries, reason))
			return
		}
		mode = m.cfg.Policy.AfterRetries
		reason = fmt.Sprintf("%s (after %d retries)", reason, m.cfg.Policy.Retries)
	}
	if mode == Ask && m.cfg.Ask == nil {
		mode = Exclude
	}
	n.Reason = reason
	switch mode {
	case Exclude, Retry:
		n.RetryAt = m.now()
		m.transition(n, Excluding, reason)
	case Ask:
		m.transition(n, Failed, reason)
	default:
		m.transition(n, Failed, reason)
		m.cancelled = fmt.Errorf("%w: node %s (%s): %s", ErrCancelled, n.Hostname, n.PrimaryMAC, reason)
	}
}

// effect is what a rule does besides changing the phase, named for the
// documentation.
type effect struct {
	name string
	fn   func(m *machine, n *Node, cause string, h happening)
}

var (
	recordOS = &effect{"records the OS (when Racker knows it)", func(m *machine, n *Node, _ string, _ happening) {
		if m.cfg.OS != "" {
			n.OS = m.cfg.OS
		}
	}}
	takeOrder = &effect{"takes the reinstall order", func(_ *machine, n *Node, _ string, _ happening) {
		n.NeedReinstall = false
	}}
	takeGeneration = &effect{"records the install generation", func(_ *machine, n *Node, _ string, h happening) {
		n.InstallGeneration = h.op.generation
	}}
	retryLater = &effect{"tries again after the backoff", func(m *machine, n *Node, _ string, h happening) {
		n.RetryAt = m.now().Add(m.cfg.RetryBackoff)
		m.log.Warn("operation failed; will retry", "op", string(h.op.kind), "node", n.Hostname, "mac", n.PrimaryMAC, "phase", string(n.Phase), "err", h.op.err)
	}}
	checkNow = &effect{"checks the BMC now, not after the backoff", func(m *machine, n *Node, _ string, _ happening) {
		n.RetryAt = m.now()
	}}
	resume = &effect{"gives the phase a full timeout from now (resumed)", func(m *machine, n *Node, _ string, _ happening) {
		n.PhaseSince = m.now()
	}}
	bootPXE = &effect{"records boot device pxe", func(m *machine, n *Node, _ string, h happening) {
		n.BootDevice = string(BootPXE)
		if !h.op.verified {
			m.log.Warn("BMC cannot report boot flags back; PXE request not verified", "node", n.Hostname, "mac", n.PrimaryMAC)
		}
	}}
	bootDisk = &effect{"records boot device disk", func(_ *machine, n *Node, _ string, _ happening) {
		n.BootDevice = string(BootDisk)
	}}
	restart = &effect{"orders a reinstall; failures count from 0", func(m *machine, n *Node, _ string, _ happening) {
		n.ExcludedByUser, n.NeedReinstall = false, true
		n.Failures, n.Reason = 0, ""
		n.RetryAt = m.now()
	}}
	keepReason = &effect{"powers off at once; the failure stays the reason", func(m *machine, n *Node, _ string, _ happening) {
		n.RetryAt = m.now()
	}}
	cancelRun = &effect{"ends the run", func(m *machine, n *Node, _ string, _ happening) {
		m.cancelled = fmt.Errorf("%w: node %s (%s): %s", ErrCancelled, n.Hostname, n.PrimaryMAC, n.Reason)
	}}
	leftByUser = &effect{"left out by the user; powers off at once", func(m *machine, n *Node, cause string, _ happening) {
		n.ExcludedByUser = true
		n.Reason = cause
		n.RetryAt = m.now()
	}}
	reprovision = &effect{"a fresh record ordering a wipe-all reinstall (what the BMC and the boot services said is kept)", func(_ *machine, n *Node, _ string, _ happening) {
		*n = Node{PrimaryMAC: n.PrimaryMAC, BMCMAC: n.BMCMAC, Hostname: n.Hostname, Role: n.Role, Type: n.Type,
			Phase: n.Phase, NeedReinstall: true, WipeAll: true, InstallGeneration: n.InstallGeneration,
			BMCReachable: n.BMCReachable, Power: n.Power, BootDevice: n.BootDevice, OS: n.OS, LastEvent: n.LastEvent, LastEventAt: n.LastEventAt}
	}}
)
