package bmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// The fake driver is for unit and scale tests only: it keeps a BMC's state in
// memory, shared per name inside the process, so a test can open
// fake://node1 through the same code path as ipmi:// and then look at or
// change the BMC with Fake("node1"). It never touches the network.

var fakes = struct {
	sync.Mutex
	m map[string]*FakeBMC
}{m: map[string]*FakeBMC{}}

// Fake returns the in-memory BMC called name, creating it (powered off, no
// boot flags) on first use.
func Fake(name string) *FakeBMC {
	fakes.Lock()
	defer fakes.Unlock()
	b, ok := fakes.m[name]
	if !ok {
		b = &FakeBMC{name: name, power: PowerOff, flags: BootFlags{Device: DeviceNone}}
		fakes.m[name] = b
	}
	return b
}

// ForgetFake drops the fake BMC called name (tests call it in Cleanup).
func ForgetFake(name string) {
	fakes.Lock()
	defer fakes.Unlock()
	delete(fakes.m, name)
}

// FakeBMC is an in-memory BMC for tests. Its setters are the faults.
type FakeBMC struct {
	name string

	mu      sync.Mutex
	power   PowerState
	flags   BootFlags
	dead    bool // answers nothing
	forgets int  // the next N boot-flag writes are lost
	noRead  bool // cannot report flags back (like stock ipmi_sim)
	actions []PowerAction
	writes  int
	serial  net.Conn // the node's side of an open console
}

// SetPower sets the power state as if the node's own button were pressed.
func (b *FakeBMC) SetPower(s PowerState) { b.mu.Lock(); b.power = s; b.mu.Unlock() }

// Power returns the current power state.
func (b *FakeBMC) Power() PowerState { b.mu.Lock(); defer b.mu.Unlock(); return b.power }

// Flags returns the stored boot flags.
func (b *FakeBMC) Flags() BootFlags { b.mu.Lock(); defer b.mu.Unlock(); return b.flags }

// SetFlags replaces the stored boot flags.
func (b *FakeBMC) SetFlags(f BootFlags) { b.mu.Lock(); b.flags = f; b.mu.Unlock() }

// SetDead makes the BMC stop (or resume) answering.
func (b *FakeBMC) SetDead(dead bool) { b.mu.Lock(); b.dead = dead; b.mu.Unlock() }

// ForgetFlags makes the next n boot-flag writes vanish, as some BMCs do.
func (b *FakeBMC) ForgetFlags(n int) { b.mu.Lock(); b.forgets = n; b.mu.Unlock() }

// SetCannotReportFlags makes flags read back as not valid, like stock ipmi_sim.
func (b *FakeBMC) SetCannotReportFlags(v bool) { b.mu.Lock(); b.noRead = v; b.mu.Unlock() }

// Actions returns the power actions received so far, in order.
func (b *FakeBMC) Actions() []PowerAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]PowerAction(nil), b.actions...)
}

// BootWrites counts boot-flag writes received (including forgotten ones).
func (b *FakeBMC) BootWrites() int { b.mu.Lock(); defer b.mu.Unlock(); return b.writes }

// Serial returns the node's side of the open console, or nil when none is open.
func (b *FakeBMC) Serial() net.Conn { b.mu.Lock(); defer b.mu.Unlock(); return b.serial }

// errFakeDead is what a dead fake BMC answers.
var errFakeDead = errors.New("no answer")

type fakeController struct {
	bmc     *FakeBMC
	node    string
	retries int // Options.BootRetries
}

func (c *fakeController) fail(what string, err error) error {
	return fmt.Errorf("%sBMC fake://%s: %s: %w", nodePrefix(c.node), c.bmc.name, what, err)
}

func (c *fakeController) alive() error {
	if c.bmc.dead {
		return errFakeDead
	}
	return nil
}

func (c *fakeController) PowerState(ctx context.Context) (PowerState, error) {
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := c.alive(); err != nil {
		return "", c.fail("reading power state", err)
	}
	return b.power, nil
}

func (c *fakeController) Power(ctx context.Context, a PowerAction) error {
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := c.alive(); err != nil {
		return c.fail("power "+string(a), err)
	}
	switch a {
	case ActionOn, ActionCycle:
		b.power = PowerOn
	case ActionOff, ActionSoftOff:
		b.power = PowerOff
	case ActionReset:
		if b.power != PowerOn {
			return c.fail("power reset", errors.New("node is off"))
		}
	default:
		return c.fail("power", fmt.Errorf("unknown action %q", a))
	}
	b.actions = append(b.actions, a)
	return nil
}

func (c *fakeController) SetBoot(ctx context.Context, f BootFlags) (bool, error) {
	f, err := f.normalize()
	if err != nil {
		return false, c.fail("setting boot flags", err)
	}
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := c.alive(); err != nil {
		return false, c.fail("setting boot flags", err)
	}
	// Same bounded write-read-retry as the IPMI driver, on the fake's state.
	for range c.retries {
		b.writes++
		if b.forgets > 0 {
			b.forgets--
			continue
		}
		b.flags = f
		if !b.noRead {
			return true, nil
		}
	}
	return false, nil
}

func (c *fakeController) Boot(ctx context.Context) (BootFlags, error) {
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := c.alive(); err != nil {
		return BootFlags{}, c.fail("reading boot flags", err)
	}
	if b.noRead {
		return BootFlags{Device: DeviceNone}, nil
	}
	return b.flags, nil
}

func (c *fakeController) Diag(ctx context.Context) (Diagnostics, error) {
	d := Diagnostics{Driver: "fake", Address: "fake://" + c.bmc.name, Protocol: "in-memory", SOLAvailable: true}
	var err error
	if d.Power, err = c.PowerState(ctx); err != nil {
		return d, err
	}
	d.Boot, _ = c.Boot(ctx)
	d.BootKnown = true
	return d, nil
}

func (c *fakeController) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, c.fail("opening the console", err)
	}
	if b.serial != nil {
		return nil, c.fail("opening the console", ErrConsoleBusy)
	}
	user, node := net.Pipe()
	b.serial = node
	return &fakeConsole{Conn: user, release: func() {
		b.mu.Lock()
		if b.serial == node {
			b.serial = nil
		}
		b.mu.Unlock()
		node.Close()
	}}, nil
}

func (c *fakeController) Close() error { return nil }

type fakeConsole struct {
	net.Conn
	once    sync.Once
	release func()
}

func (f *fakeConsole) Close() error {
	err := f.Conn.Close()
	f.once.Do(f.release)
	return err
}
