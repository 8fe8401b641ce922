// Package orchestrator takes every node of a rack from "powered, unknown" to
// "installed and booted from disk", one state machine per node.
//
// Progress is observed, never guessed: a node moves on when its BMC answers
// or when it causes an event at the boot services (a DHCP request, an iPXE
// or Ignition fetch, an install callback). Each phase has a timeout, and a
// failure policy (retry, exclude, ask, cancel) decides what a failure does.
// The state — every node's record and the last boot-services event consumed
// — is persisted after each batch of changes, before anything is done
// about them (a journal line, journal.go), so a run killed at any moment
// resumes where it stopped, never loses an event and never reinstalls a
// booted node.
//
// Where a node stands is one phase, and what can happen to it in each
// phase is one table (table.go, printed as docs/phases.md by go
// generate): machine.go applies it, inputs.go turns what happens — slots,
// operations, events, timeouts, answers — into its inputs.
//
// The door is Run; the BMCs, the boot services and the clock are ports
// (ports.go) so that tests drive every transition with fakes.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// NodeSpec is one node to provision, from the plan.
type NodeSpec struct {
	PrimaryMAC string // lower case, colons
	BMCMAC     string
	Hostname   string
	Role       string
	Type       string
	// EFI: the node's firmware boots UEFI (a per-type setting), so boot
	// flags carry the EFI bit.
	EFI bool
	// Exclude leaves the node out (and powered off); ExcludeReason says why.
	Exclude       bool
	ExcludeReason string
}

// FailureMode is what a failure does to a node.
type FailureMode string

const (
	Retry   FailureMode = "retry"
	Exclude FailureMode = "exclude"
	Ask     FailureMode = "ask"
	Cancel  FailureMode = "cancel"
)

// ParseFailureMode checks a --on-failure value.
func ParseFailureMode(s string) (FailureMode, error) {
	switch m := FailureMode(s); m {
	case Retry, Exclude, Ask, Cancel:
		return m, nil
	}
	return "", fmt.Errorf("--on-failure %q: want retry, exclude, ask or cancel", s)
}

// Policy decides what a node's failure does.
type Policy struct {
	OnFailure FailureMode
	// Retries is how many times Retry starts a node afresh.
	Retries int
	// AfterRetries applies once the retries are used up: Ask (on a
	// terminal), Exclude or Cancel.
	AfterRetries FailureMode
}

// Config is one provisioning run.
type Config struct {
	StateDir string
	Nodes    []NodeSpec
	Boot     BootServices
	OpenBMC  BMCOpener
	// Parallel bounds the nodes in flight (default 20).
	Parallel int
	Policy   Policy
	Timeouts Timeouts
	// Ask is called (from its own goroutine) when a failure needs a human
	// decision; it returns Retry, Exclude or Cancel. Nil means Exclude.
	Ask func(ctx context.Context, n Node, reason string) FailureMode
	// OS names what is installed ("flatcar current"), recorded per node;
	// "" keeps a node's earlier record (the boot services did not say).
	OS string
	// StopAt ends the run once every node reached this phase (or a
	// terminal one); "" runs until every node is terminal.
	StopAt Phase

	// BMCConcurrency bounds concurrent BMC operations (default 10) and
	// BMCInterval spaces their starts, rack-wide (default 50 ms; negative:
	// none): a rack of BMCs on one switch should not be hit all at once,
	// nor a rack's power supplies see every server power on in the same
	// instant. Three operations per node (check, PXE, disk) make this a
	// floor of 3 × nodes × BMCInterval on a bootstrap's wall time.
	BMCConcurrency int
	BMCInterval    time.Duration
	// BMCOpTimeout bounds one BMC operation (default 2 min).
	BMCOpTimeout time.Duration
	// RetryBackoff is the wait before repeating a failed BMC operation or
	// restarting a node (default 10 s).
	RetryBackoff time.Duration
	// PollWait is the events long-poll wait (default 30 s).
	PollWait time.Duration
	// Tick is how often timeouts are checked (default 1 s).
	Tick time.Duration
	// PowerCheck is how often the power of a node waiting for its booted
	// callback is read (default 30 s; negative: never). A node found off
	// is powered on once: nothing else may start a domain whose guest
	// reboot stopped it (laptop mode without BMCs), and waiting out the
	// boot timeout in silence explains nothing.
	PowerCheck time.Duration

	Clock  Clock
	Logger *slog.Logger
	// OnChange gets a snapshot of the run's nodes after every change (the
	// live view). It runs on the orchestrator's goroutine: keep it quick.
	OnChange func([]Node)
}

// The shipped defaults of the run's pace (racker bootstrap's --parallel,
// --bmc-concurrency and --bmc-interval): what a bootstrap does unless told.
const (
	DefaultParallel       = 20
	DefaultBMCConcurrency = 10
	DefaultBMCInterval    = 50 * time.Millisecond
)

func (c *Config) defaults() {
	if c.Parallel <= 0 {
		c.Parallel = DefaultParallel
	}
	if c.Policy.OnFailure == "" {
		c.Policy.OnFailure = Retry
		c.Policy.Retries = 3
	}
	if c.Policy.AfterRetries == "" {
		c.Policy.AfterRetries = Exclude
	}
	c.Timeouts = c.Timeouts.withDefaults()
	if c.BMCConcurrency <= 0 {
		c.BMCConcurrency = DefaultBMCConcurrency
	}
	if c.BMCInterval < 0 {
		c.BMCInterval = 0
	} else if c.BMCInterval == 0 {
		c.BMCInterval = DefaultBMCInterval
	}
	if c.PowerCheck == 0 {
		c.PowerCheck = 30 * time.Second
	}
	if c.BMCOpTimeout <= 0 {
		c.BMCOpTimeout = 2 * time.Minute
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 10 * time.Second
	}
	if c.PollWait <= 0 {
		c.PollWait = 30 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Result is how a run ended, node by node, and what the run itself cost.
type Result struct {
	Nodes []Node
	Stats Stats
}

// Failed returns the nodes that did not make it: failed, or excluded after
// failures (not those the user excluded).
func (r Result) Failed() []Node {
	var out []Node
	for _, n := range r.Nodes {
		if n.Phase == Failed || (n.Phase.Left() && !n.ExcludedByUser) {
			out = append(out, n)
		}
	}
	return out
}

// ErrCancelled ends a run under --on-failure cancel (or a "cancel" answer).
var ErrCancelled = errors.New("provisioning cancelled")

// Run provisions cfg.Nodes until each is booted, excluded or failed (or
// has reached cfg.StopAt), or ctx ends. Nodes already booted are left alone.
// It holds the state folder's lock for its whole life.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	if cfg.Boot == nil || cfg.OpenBMC == nil {
		return Result{}, errors.New("orchestrator: Boot and OpenBMC are required")
	}
	l, err := lock(cfg.StateDir)
	if err != nil {
		return Result{}, err
	}
	defer l.Close()
	st, err := Load(cfg.StateDir)
	if err != nil {
		return Result{}, err
	}
	r := &runner{
		cfg:      cfg,
		st:       st,
		specs:    map[string]NodeSpec{},
		byBMC:    map[string]string{},
		inputs:   make(chan report, 16),
		inflight: map[string]opKind{},
		asking:   map[string]bool{},
		lim:      newLimiter(cfg.Clock, cfg.BMCConcurrency, cfg.BMCInterval),
	}
	r.machine = machine{cfg: &r.cfg, now: cfg.Clock.Now, log: cfg.Logger}
	for _, s := range cfg.Nodes {
		r.order = append(r.order, s.PrimaryMAC)
		r.specs[s.PrimaryMAC] = s
		if s.BMCMAC != "" {
			r.byBMC[s.BMCMAC] = s.PrimaryMAC
		}
	}
	began := time.Now()
	r.prepare()
	if err := r.sync(ctx); err != nil {
		return r.result(), err
	}
	r.journal = openJournal(cfg.StateDir, r.st, &r.stats)
	r.stats.Busy += time.Since(began)
	err = r.loop(ctx)
	began = time.Now()
	if perr := r.persist(); err == nil { // close syncs
		err = perr
	}
	if cerr := r.journal.close(r.st); err == nil {
		err = cerr
	}
	r.stats.Busy += time.Since(began)
	return r.result(), err
}

// runner is one run's mutable state; only the loop goroutine touches st.
type runner struct {
	machine
	cfg    Config
	st     *State
	specs  map[string]NodeSpec
	order  []string          // spec order: nodes start in plan order
	byBMC  map[string]string // BMC MAC → primary MAC
	inputs chan report

	inflight map[string]opKind // a BMC or boot-services operation runs for the node
	asking   map[string]bool
	lim      *limiter
	wg       sync.WaitGroup

	journal *journal
	stats   Stats
}

func (r *runner) result() Result {
	out := Result{Stats: r.stats}
	for _, mac := range r.order {
		if n := r.st.Nodes[mac]; n != nil {
			out.Nodes = append(out.Nodes, *n)
		}
	}
	return out
}

func (r *runner) snapshot() []Node { return r.result().Nodes }

// persist writes the transitions, then the changes of state (one journal
// line, made durable by the syncer before any operation they call for
// starts); a crash in between repeats a log line at worst, never loses a
// state change.
func (r *runner) persist() error {
	if !r.dirty {
		return nil
	}
	if err := r.journal.commit(r.st, r.logged, r.touched, false); err != nil {
		return err
	}
	r.logged = nil
	clear(r.touched)
	r.dirty = false
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(r.snapshot())
	}
	return nil
}

func (r *runner) loop(ctx context.Context) error {
	workCtx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		r.wg.Wait()
	}()
	r.wg.Add(1)
	go r.poll(workCtx, r.st.EventEpoch, r.st.LastEventSeq)
	busySince := time.Now()
	defer func() { r.stats.Busy += time.Since(busySince) }()
	for {
		// Decide what to start (slots, operations, questions), write the
		// state that calls for it, and start it once that is durable (the
		// syncer, journal_sync.go, does both while the loop goes on): an
		// operation never starts from a state a crash could take back. A
		// batch that starts nothing is written (readers and a kill -9 see
		// it) and synced with the next one that does, or when the run
		// ends; what a power cut takes from it, the boot services' event
		// journal gives again, from the position the state keeps in it.
		launch := r.schedule(workCtx)
		if err := r.persist(); err != nil {
			return err
		}
		r.journal.after(launch)
		if r.cancelled != nil {
			return r.cancelled
		}
		if r.finished() {
			return nil
		}
		r.stats.Busy += time.Since(busySince)
		select {
		case in := <-r.inputs:
			busySince = time.Now()
			r.apply(in)
		drain:
			for {
				select {
				case in := <-r.inputs:
					r.apply(in)
				default:
					break drain
				}
			}
		case <-r.cfg.Clock.After(r.cfg.Tick):
			busySince = time.Now()
		case <-ctx.Done():
			busySince = time.Now()
			return fmt.Errorf("provisioning interrupted (state saved; run again to resume): %w", ctx.Err())
		}
		r.checkTimeouts()
	}
}

// finished: every node reached its goal and nothing is running.
func (r *runner) finished() bool {
	if len(r.asking) > 0 {
		return false
	}
	for _, kind := range r.inflight {
		if kind != opPowerWatch { // a watch has nothing to finish: the run's end cancels it
			return false
		}
	}
	for _, mac := range r.order {
		p := r.st.Nodes[mac].Phase
		if phases[p].op != "" {
			return false
		}
		if p.Terminal() {
			continue
		}
		if r.cfg.StopAt != "" && phases[p].slot && p.Rank() >= r.cfg.StopAt.Rank() {
			continue
		}
		return false
	}
	return true
}

func (r *runner) apply(in report) {
	switch {
	case in.events != nil:
		for _, ev := range in.events {
			r.onEvent(ev)
		}
	case in.op != nil:
		delete(r.inflight, in.op.mac)
		r.onOp(*in.op)
	case in.ask != nil:
		delete(r.asking, in.ask.mac)
		r.onAnswer(in.ask.mac, in.ask.decision)
	}
}
