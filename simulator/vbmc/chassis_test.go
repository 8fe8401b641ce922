package vbmc

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// rebootingMachine is the in-memory machine plus the libvirt driver's
// "reboot under way" signal.
type rebootingMachine struct {
	*memMachine
	rebooting atomic.Bool
}

func (r *rebootingMachine) Rebooting() bool { return r.rebooting.Load() }

func TestChassisReportsPowerDuringAGuestReboot(t *testing.T) {
	ctx := context.Background()
	m := &rebootingMachine{memMachine: newMemMachine()}
	c, err := newChassis(ctx, m, "n1", time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if on, _ := c.reportedOn(ctx); on {
		t.Fatal("fresh machine reported on")
	}
	m.rebooting.Store(true) // the VM is shut off for its restart
	if on, _ := c.reportedOn(ctx); !on {
		t.Fatal("a rebooting server reported off")
	}
	if on, _ := c.poweredOn(ctx); on {
		t.Fatal("the restart decision must see the real state (off)")
	}
}

func TestChassisGuestRebootAfterPowerOffStaysOff(t *testing.T) {
	ctx := context.Background()
	m := newMemMachine()
	c, err := newChassis(ctx, m, "n1", time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.powerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.powerOff(ctx); err != nil {
		t.Fatal(err)
	}
	// A reboot event that was already on its way when the power-off came.
	c.guestEvent(ctx, GuestReset)
	if on, _ := m.PoweredOn(ctx); on || len(m.startLog()) != 1 {
		t.Fatalf("power-off undone by a late guest reboot (starts %v)", m.startLog())
	}
	if err := c.cycle(ctx, "power cycle"); err == nil {
		t.Fatal("power cycle of an off machine accepted")
	}
}
