package vbmc

import (
	"context"
	"sync"
)

// memMachine is an in-memory Machine for unit tests: it records every start
// with its boot device, and the test plays the guest (reboot, power-off).
// Integration tests use a real libvirt domain instead.
type memMachine struct {
	mu     sync.Mutex
	on     bool
	starts []BootDevice
	events chan GuestEvent
}

func newMemMachine() *memMachine { return &memMachine{events: make(chan GuestEvent)} }

func (m *memMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *memMachine) Start(_ context.Context, first BootDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = true
	m.starts = append(m.starts, first)
	return nil
}

func (m *memMachine) Stop(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = false
	return nil
}

func (m *memMachine) Shutdown(context.Context) error { return m.Stop(context.Background()) }

func (m *memMachine) GuestEvents(ctx context.Context) (<-chan GuestEvent, error) {
	out := make(chan GuestEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-m.events:
				out <- ev
			}
		}
	}()
	return out, nil
}

// guest makes the guest reboot or power off: the machine goes off, then the
// BMC hears about it, as with libvirt's on_reboot=destroy.
func (m *memMachine) guest(ev GuestEvent) {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	m.events <- ev
}

func (m *memMachine) startLog() []BootDevice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]BootDevice(nil), m.starts...)
}
