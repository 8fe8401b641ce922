package main

import (
	"context"
	"sync"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/simulator/vbmc"
)

// The machines behind the scale bench's BMCs: a simulated node starts when
// its BMC powers it on, with the device the firmware picks from the BMC's
// boot flags.

// --- fake:// BMCs (a fake, for the scale test only) ---

// fakeHooked is a node's BMC through provisioner/bmc's real fake:// driver
// (opened by orchestrator.ControllerOpener like any other driver), with the
// machine behind it: a power on, cycle or reset starts the simulated node
// with the device the firmware picks from the fake BMC's flags.
type fakeHooked struct {
	orchestrator.BMC
	fake *bmc.FakeBMC
	node *simNode
}

func (h fakeHooked) Power(ctx context.Context, action string) error {
	wasOn := h.fake.Power() == bmc.PowerOn
	if err := h.BMC.Power(ctx, action); err != nil {
		return err
	}
	switch bmc.PowerAction(action) {
	case bmc.ActionOn:
		if !wasOn {
			h.node.start(firmwareDevice(h.fake))
		}
	case bmc.ActionCycle, bmc.ActionReset:
		h.node.start(firmwareDevice(h.fake))
	case bmc.ActionOff:
		h.node.halt()
	}
	return nil
}

// firmwareDevice is what the firmware boots given the fake BMC's flags;
// like a real BMC it uses next-boot-only flags up.
func firmwareDevice(f *bmc.FakeBMC) bootDevice {
	fl := f.Flags()
	if !fl.Valid {
		return devDefault
	}
	if !fl.Persistent {
		used := fl
		used.Valid = false
		f.SetFlags(used)
	}
	switch fl.Device {
	case bmc.DevicePXE:
		return devPXE
	case bmc.DeviceDisk:
		return devDisk
	}
	return devDefault
}

// --- in-memory machines behind real IPMI servers (vbmc) ---

// simMachine is the machine behind a real virtual BMC (simulator/vbmc over
// UDP on loopback): the BMC's chassis logic (boot flags, next-boot-only
// flags used up, restart after a guest reboot) is the real one; the
// machine is the simulated node.
type simMachine struct {
	node   *simNode
	mu     sync.Mutex
	on     bool
	events chan vbmc.GuestEvent
}

func newSimMachine(n *simNode) *simMachine {
	m := &simMachine{node: n, events: make(chan vbmc.GuestEvent, 4)}
	n.reboot = m.guestReboot
	return m
}

func (m *simMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *simMachine) Start(_ context.Context, first vbmc.BootDevice) error {
	m.mu.Lock()
	m.on = true
	m.mu.Unlock()
	dev := devDefault
	switch first {
	case vbmc.BootPXE:
		dev = devPXE
	case vbmc.BootDisk:
		dev = devDisk
	}
	m.node.start(dev)
	return nil
}

func (m *simMachine) Stop(context.Context) error {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	m.node.halt()
	return nil
}

func (m *simMachine) Shutdown(ctx context.Context) error { return m.Stop(ctx) }

func (m *simMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	out := make(chan vbmc.GuestEvent)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-m.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// guestReboot is the OS rebooting itself: the machine goes off and tells
// the BMC, which starts it again with its current flags.
func (m *simMachine) guestReboot() {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	select {
	case m.events <- vbmc.GuestReset:
	case <-m.node.sim.ctx.Done():
	}
}
