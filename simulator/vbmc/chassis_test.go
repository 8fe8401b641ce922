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

// slowMachine takes its time to stop, as a VM under TCG does.
type slowMachine struct {
	*memMachine
	delay time.Duration
}

func (s *slowMachine) Stop(ctx context.Context) error {
	time.Sleep(s.delay)
	return s.memMachine.Stop(ctx)
}

// A power cycle is answered before the machine has gone off and on (a
// client times out otherwise, and its retry cycles the machine again); the
// commands that follow wait for it.
func TestChassisCycleAnswersFirst(t *testing.T) {
	ctx := context.Background()
	m := &slowMachine{memMachine: newMemMachine(), delay: 300 * time.Millisecond}
	c, err := newChassis(ctx, m, "n1", time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.powerOn(ctx); err != nil {
		t.Fatal(err)
	}
	c.setBootOption(paramBootFlags, []byte{0x80, 0x08, 0, 0, 0}) // next boot: disk
	cctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	if err := c.cycle(cctx, "power cycle"); err != nil {
		t.Fatal(err)
	}
	cancel() // the request is answered; the cycle must not stop with it
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the power cycle was answered after %s, i.e. after the machine restarted", d)
	}
	// A boot flags read waits for the cycle, and sees the flags used.
	if data, _ := c.getBootOption(paramBootFlags); data[2]&0x80 != 0 {
		t.Errorf("next-boot-only flags still valid after the cycle: % x", data)
	}
	if got := devices(m.startLog()); got != "[default disk]" {
		t.Errorf("starts = %s, want [default disk]", got)
	}
}

// slowStarter takes its time to start, as a VM under TCG on a busy host does.
type slowStarter struct {
	*memMachine
	delay time.Duration
}

func (s *slowStarter) Start(ctx context.Context, first BootDevice) error {
	time.Sleep(s.delay)
	return s.memMachine.Start(ctx, first)
}

// A power on is answered before the machine has started; power status says
// on meanwhile, and the commands that follow wait for the start.
func TestChassisPowerOnAnswersFirst(t *testing.T) {
	ctx := context.Background()
	m := &slowStarter{memMachine: newMemMachine(), delay: 300 * time.Millisecond}
	c, err := newChassis(ctx, m, "n1", time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.setBootOption(paramBootFlags, []byte{0x80, 0x04, 0, 0, 0}) // next boot: PXE
	cctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	if err := c.powerOn(cctx); err != nil {
		t.Fatal(err)
	}
	cancel() // the request is answered; the start must not stop with it
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("power on was answered after %s, i.e. after the machine started", d)
	}
	if on, _ := c.reportedOn(ctx); !on {
		t.Error("power status said off while the machine was being started")
	}
	// A boot flags read waits for the start, and sees the next-boot flags used.
	if data, _ := c.getBootOption(paramBootFlags); data[2]&0x80 != 0 {
		t.Errorf("next-boot-only flags still valid after the start: % x", data)
	}
	if got := devices(m.startLog()); got != "[pxe]" {
		t.Errorf("starts = %s, want [pxe]", got)
	}
	// Already on: answered without a second start.
	if err := c.powerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(m.startLog()); n != 1 {
		t.Errorf("power on of a running machine started it again (%d starts)", n)
	}
}
