package vbmc

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"
)

// Machine is the hardware a virtual BMC manages: small on purpose, so the
// IPMI side is tested against an in-memory machine and the libvirt driver
// stays a thin mapping.
type Machine interface {
	// PoweredOn says whether the machine runs.
	PoweredOn(ctx context.Context) (bool, error)
	// Start applies the boot order (first tried first) and powers the
	// machine on. The machine is off when Start is called.
	Start(ctx context.Context, first BootDevice) error
	// Stop cuts the power at once (no guest involvement).
	Stop(ctx context.Context) error
	// Shutdown asks the guest to power off (ACPI power button).
	Shutdown(ctx context.Context) error
	// GuestEvents reports power changes the guest made itself, each one
	// once the machine is off. The channel closes when ctx ends.
	GuestEvents(ctx context.Context) (<-chan GuestEvent, error)
}

// GuestEvent is a power change the guest caused.
type GuestEvent int

const (
	// GuestReset: the guest rebooted. Real firmware reads the boot flags
	// again, so the BMC starts the machine with them.
	GuestReset GuestEvent = iota + 1
	// GuestPowerOff: the guest powered itself off; it stays off.
	GuestPowerOff
)

func (e GuestEvent) String() string {
	switch e {
	case GuestReset:
		return "guest-reset"
	case GuestPowerOff:
		return "guest-shutdown"
	}
	return fmt.Sprintf("guest-event(%d)", int(e))
}

// errNotInThisState is the IPMI answer to a power cycle or reset of a
// machine that is off (§28.3 recommends D5h and no action).
var errNotInThisState = fmt.Errorf("the machine is off: %w", types.CodeNotSupported)

// chassis is the BMC's view of the machine: power actions, boot options and
// what to do when the guest reboots. One mutex orders IPMI commands and
// guest events, so a power-off and a guest reboot never race into a start.
type chassis struct {
	mu   sync.Mutex
	m    Machine
	boot bootOptions
	// wantOn is the power state the BMC was last asked for; a guest reboot
	// after a power-off command must not bring the machine back.
	wantOn bool
	// starting: a power on was answered and the machine is being started.
	starting atomic.Bool
	now      func() time.Time
	log      *slog.Logger
	name     string // node name for messages
}

func newChassis(ctx context.Context, m Machine, name string, now func() time.Time, log *slog.Logger) (*chassis, error) {
	on, err := m.PoweredOn(ctx)
	if err != nil {
		return nil, fmt.Errorf("while reading the power state of %s: %w", name, err)
	}
	return &chassis{m: m, wantOn: on, now: now, log: log, name: name}, nil
}

// rebootTracker is implemented by machines that learn of a guest reboot
// before the machine is back on (libvirt: from QEMU's event).
type rebootTracker interface{ Rebooting() bool }

// reportedOn is the power state IPMI reports: a server that is rebooting
// has power, even in the instant its VM is shut off for the restart.
func (c *chassis) reportedOn(ctx context.Context) (bool, error) {
	if rt, ok := c.m.(rebootTracker); ok && rt.Rebooting() {
		return true, nil
	}
	if c.starting.Load() {
		return true, nil
	}
	return c.poweredOn(ctx)
}

func (c *chassis) poweredOn(ctx context.Context) (bool, error) {
	on, err := c.m.PoweredOn(ctx)
	if err != nil {
		return false, fmt.Errorf("while reading the power state of %s: %w", c.name, err)
	}
	return on, nil
}

// powerOn starts the machine with the current boot flags. Already on: no-op.
//
// It answers before the machine has started, as cycle does and for the same
// reason (starting a VM under TCG can take longer than ipmitool waits, and
// its retry would arrive mid-start); power status reports on meanwhile, and
// the commands that take the chassis mutex wait for the start.
func (c *chassis) powerOn(ctx context.Context) error {
	c.mu.Lock()
	c.boot.noteChassisControl()
	c.wantOn = true
	on, err := c.poweredOn(ctx)
	if err != nil || on {
		c.mu.Unlock()
		return err
	}
	c.starting.Store(true)
	bg := context.WithoutCancel(ctx)
	go func() {
		defer c.mu.Unlock()
		defer c.starting.Store(false)
		if err := c.startLocked(bg, "power on"); err != nil {
			c.log.Error("power on: could not start the machine", "err", err)
		}
	}()
	return nil
}

// startLocked starts the machine with the boot device the flags choose and,
// once it started, uses next-boot-only flags up.
func (c *chassis) startLocked(ctx context.Context, why string) error {
	dev := c.boot.next(c.now())
	if err := c.m.Start(ctx, dev); err != nil {
		return fmt.Errorf("while starting %s (%s, boot %s): %w", c.name, why, dev, err)
	}
	c.boot.booted(c.now())
	c.log.Info("machine started", "why", why, "boot", dev.String(), "efi", c.boot.efi())
	return nil
}

func (c *chassis) powerOff(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot.noteChassisControl()
	c.wantOn = false
	on, err := c.poweredOn(ctx)
	if err != nil || !on {
		return err
	}
	if err := c.m.Stop(ctx); err != nil {
		return fmt.Errorf("while powering %s off: %w", c.name, err)
	}
	c.log.Info("machine powered off")
	return nil
}

// cycle is power cycle and hard reset alike: the machine goes off and starts
// again through its firmware, which reads the boot flags.
//
// Like a real BMC it answers at once and acts afterwards (IPMI §28.3 lets a
// BMC respond before the action is done): stopping and starting a VM takes
// seconds under TCG, longer than an IPMI client waits for its answer, and a
// client that gives up and retries would cycle the machine again and again.
// The chassis mutex is held until the machine is started, so the commands
// that follow (boot flags, power) see it done.
func (c *chassis) cycle(ctx context.Context, why string) error {
	c.mu.Lock()
	c.boot.noteChassisControl()
	on, err := c.poweredOn(ctx)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if !on {
		c.mu.Unlock()
		return fmt.Errorf("while doing %s on %s: %w", why, c.name, errNotInThisState)
	}
	c.wantOn = true
	// The request's context ends with the answer; the cycle goes on.
	bg := context.WithoutCancel(ctx)
	go func() {
		defer c.mu.Unlock()
		if err := c.m.Stop(bg); err != nil {
			c.log.Error("power cycle: could not stop the machine", "why", why, "err", err)
			return
		}
		if err := c.startLocked(bg, why); err != nil {
			c.log.Error("power cycle: could not start the machine", "why", why, "err", err)
		}
	}()
	return nil
}

func (c *chassis) softOff(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot.noteChassisControl()
	if err := c.m.Shutdown(ctx); err != nil {
		return fmt.Errorf("while asking %s to shut down: %w", c.name, err)
	}
	return nil
}

// guestEvent reacts to a power change the guest made: after a reboot the
// machine starts again with the current flags, as firmware would; after a
// power-off it stays off.
func (c *chassis) guestEvent(ctx context.Context, ev GuestEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log.Info("guest power event", "event", ev.String())
	if ev != GuestReset {
		c.wantOn = false
		c.settleOff(ctx)
		return
	}
	if !c.wantOn {
		c.log.Info("not restarting after a guest reboot: powered off meanwhile")
		c.settleOff(ctx)
		return
	}
	on, err := c.poweredOn(ctx)
	if err == nil && on {
		return // someone started it already
	}
	if err := c.startLocked(ctx, "guest reboot"); err != nil {
		c.log.Error("restart after a guest reboot failed", "err", err)
	}
}

// settleOff tells the machine it stays off (a no-op stop), so it no longer
// reports a reboot in progress.
func (c *chassis) settleOff(ctx context.Context) {
	if err := c.m.Stop(ctx); err != nil {
		c.log.Warn("could not settle the machine off", "err", err)
	}
}

// watch applies guest events until ctx ends.
func (c *chassis) watch(ctx context.Context) error {
	events, err := c.m.GuestEvents(ctx)
	if err != nil {
		return fmt.Errorf("while subscribing to guest power events of %s: %w", c.name, err)
	}
	for ev := range events {
		c.guestEvent(ctx, ev)
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("guest power events of %s stopped", c.name)
}

func (c *chassis) setBootOption(param byte, data []byte) types.CompletionCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.boot.set(param, data, c.now())
	if cc == types.CodeOK && param == paramBootFlags {
		c.log.Info("boot flags set", "flags", fmt.Sprintf("%x", data))
	}
	return cc
}

func (c *chassis) getBootOption(param byte) ([]byte, types.CompletionCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot.get(param, c.now())
}

// bootOverride reads the boot flags as Redfish shows them.
func (c *chassis) bootOverride() bootOverride {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot.override(c.now())
}

// setBootOverride applies a Redfish PATCH of Boot to the same flags IPMI sets.
func (c *chassis) setBootOverride(p bootPatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.boot.setOverride(p, c.now()); err != nil {
		return err
	}
	o := c.boot.override(c.now())
	c.log.Info("boot override set over Redfish", "enabled", o.Enabled, "target", o.Target, "mode", o.Mode,
		"flags", fmt.Sprintf("%x", c.boot.flags))
	return nil
}
