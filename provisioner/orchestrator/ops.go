package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Operations run on their own goroutines and report back to the loop as
// inputs; they never touch the state.

type opKind string

const (
	opReinstall opKind = "reinstall" // boot services: next netboot installs
	opDiag      opKind = "diag"      // BMC answers?
	opPXE       opKind = "pxe"       // boot device PXE next boot, power on or cycle
	opDiskBoot  opKind = "disk-boot" // boot device disk, persistent
	opPowerOff  opKind = "power-off" // excluded nodes stay off
	// opPowerWatch reads the power of a node that should be booting and,
	// found off (twice, offConfirm apart), powers it on if it may.
	opPowerWatch opKind = "power-watch"
)

// offConfirm is how long a node found off is given before it counts as
// off: a BMC that restarts a domain after the guest's reboot (the
// simulator's vBMC) leaves it off for a moment, which is not "nobody will
// power it on".
const offConfirm = 3 * time.Second

type opResult struct {
	mac        string
	kind       opKind
	phase      Phase // the node's phase when the operation started
	err        error
	power      string
	action     string
	verified   bool
	generation int
}

type askResult struct {
	mac      string
	decision FailureMode
}

// report is what the operations, the event poll and the questions send
// the loop: one of its fields is set.
type report struct {
	events []api.Event
	op     *opResult
	ask    *askResult
}

func (r *runner) send(ctx context.Context, in report) {
	select {
	case r.inputs <- in:
	case <-ctx.Done():
	}
}

func (r *runner) runOp(ctx context.Context, s NodeSpec, kind opKind, phase Phase, a opArgs) {
	defer r.wg.Done()
	res := opResult{mac: s.PrimaryMAC, kind: kind, phase: phase}
	res.err = r.doOp(ctx, s, kind, a, &res)
	if res.err != nil {
		res.err = fmt.Errorf("%s: %w", kind, res.err) // the BMC's errors name the node and address
	}
	r.send(ctx, report{op: &res})
}

// opArgs is what an operation takes from the node's record when it starts.
type opArgs struct {
	wipeAll bool // opReinstall: wipe every disk
	powerOn bool // opPowerWatch: the node may be powered on (not done yet in this phase)
}

func (r *runner) doOp(ctx context.Context, s NodeSpec, kind opKind, a opArgs, res *opResult) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BMCOpTimeout)
	defer cancel()
	if kind == opReinstall {
		rn, err := r.cfg.Boot.Reinstall(ctx, s.PrimaryMAC, a.wipeAll)
		if err != nil {
			return fmt.Errorf("asking the boot services for a reinstall: %w", err)
		}
		res.generation = rn.InstallGeneration
		return nil
	}
	if err := r.lim.wait(ctx); err != nil {
		return err
	}
	defer r.lim.done()
	b, err := r.cfg.OpenBMC(ctx, s)
	if err != nil {
		return fmt.Errorf("connecting to the BMC: %w", err)
	}
	defer b.Close()
	switch kind {
	case opDiag:
		res.power, err = b.Diag(ctx)
		return err
	case opPXE:
		// Power off, set the flags, power on — not "cycle": off and on are
		// idempotent, so a BMC client that resends a command whose answer
		// was late cannot turn one request into several reboots, the later
		// ones booting from disk once the next-boot PXE flag is used up.
		state, err := b.PowerState(ctx)
		if err != nil {
			return fmt.Errorf("reading power state: %w", err)
		}
		res.action = "on"
		if state == "on" {
			res.action = "off, on"
			if err := r.powerOff(ctx, b); err != nil {
				return err
			}
		}
		if res.verified, err = b.SetBoot(ctx, BootPXE, false, s.EFI); err != nil {
			return fmt.Errorf("setting boot device PXE: %w", err)
		}
		// The boot window opens before the node powers on, so its
		// netboot is one Racker asked for (docs/security.md).
		rn, err := r.cfg.Boot.Netboot(ctx, s.PrimaryMAC)
		if err != nil {
			return fmt.Errorf("opening the node's boot window at the boot services: %w", err)
		}
		res.generation = rn.InstallGeneration
		if err := b.Power(ctx, "on"); err != nil {
			return fmt.Errorf("power on: %w", err)
		}
		res.power = "on"
		return nil
	case opDiskBoot:
		if res.verified, err = b.SetBoot(ctx, BootDisk, true, s.EFI); err != nil {
			return fmt.Errorf("setting boot device disk: %w", err)
		}
		return nil
	case opPowerOff:
		if err := b.Power(ctx, "off"); err != nil {
			return err
		}
		res.power = "off"
		return nil
	case opPowerWatch:
		return r.powerWatch(ctx, b, a.powerOn, res)
	}
	return fmt.Errorf("unknown operation %q", kind)
}

// powerWatch reads the power of a node that should be booting. Off, and
// still off offConfirm later, it is powered on when powerOn allows (a
// domain whose guest reboot stopped it, with nothing to start it again),
// else reported off (res.power) for the machine to fail it.
func (r *runner) powerWatch(ctx context.Context, b BMC, powerOn bool, res *opResult) error {
	for i := 0; i < 2; i++ {
		if i > 0 {
			select {
			case <-r.cfg.Clock.After(offConfirm):
			case <-ctx.Done():
				return fmt.Errorf("waiting to read the power state again: %w", ctx.Err())
			}
		}
		state, err := b.PowerState(ctx)
		if err != nil {
			return fmt.Errorf("reading power state: %w", err)
		}
		res.power = state
		if state != "off" {
			return nil
		}
	}
	if !powerOn {
		return nil
	}
	if err := b.Power(ctx, "on"); err != nil {
		return fmt.Errorf("power on: %w", err)
	}
	res.action, res.power = "on", "on"
	return nil
}

// powerOff turns the node off and waits until the BMC reports it off.
func (r *runner) powerOff(ctx context.Context, b BMC) error {
	if err := b.Power(ctx, "off"); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	for {
		state, err := b.PowerState(ctx)
		if err != nil {
			return fmt.Errorf("reading power state after power off: %w", err)
		}
		if state == "off" {
			return nil
		}
		select {
		case <-r.cfg.Clock.After(time.Second):
		case <-ctx.Done():
			return fmt.Errorf("waiting for the node to power off: %w", ctx.Err())
		}
	}
}

func (r *runner) ask(ctx context.Context, n Node) {
	d := r.cfg.Ask(ctx, n, n.Reason)
	r.send(ctx, report{ask: &askResult{mac: n.PrimaryMAC, decision: d}})
}

// poll long-polls the boot services for events and hands them to the loop
// in order. The loop records the last sequence it applied; after a crash
// the next run asks again from there.
func (r *runner) poll(ctx context.Context, epoch string, after uint64) {
	defer r.wg.Done()
	failing := false
	for ctx.Err() == nil {
		evs, err := r.cfg.Boot.EventsIn(ctx, epoch, after, r.cfg.PollWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				r.log.Warn("cannot read events from the boot services; retrying", "err", err)
			}
			failing = true
			select {
			case <-r.cfg.Clock.After(2 * time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		if failing {
			r.log.Info("reading events from the boot services again")
			failing = false
		}
		if len(evs) == 0 {
			continue
		}
		last := evs[len(evs)-1]
		after = last.Seq
		if last.Epoch != "" {
			epoch = last.Epoch
		}
		r.send(ctx, report{events: evs})
	}
}

// limiter bounds concurrent BMC operations and spaces their starts.
type limiter struct {
	sem      chan struct{}
	clock    Clock
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
}

func newLimiter(c Clock, concurrency int, interval time.Duration) *limiter {
	return &limiter{sem: make(chan struct{}, concurrency), clock: c, interval: interval}
}

func (l *limiter) wait(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	now := l.clock.Now()
	at := l.next
	if at.Before(now) {
		at = now
	}
	l.next = at.Add(l.interval)
	l.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		select {
		case <-l.clock.After(d):
		case <-ctx.Done():
			<-l.sem
			return ctx.Err()
		}
	}
	return nil
}

func (l *limiter) done() { <-l.sem }
