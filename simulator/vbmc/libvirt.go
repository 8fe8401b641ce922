package vbmc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultLibvirtSocket is where libvirtd listens (qemu:///system).
const DefaultLibvirtSocket = "/var/run/libvirt/libvirt-sock"

// offTimeout bounds the wait for a domain to reach "shut off" after a
// destroy or a guest reset.
const offTimeout = 30 * time.Second

// libvirtMachine is a libvirt domain seen as a machine. The domain follows
// the simulator's conventions (contract D): <on_reboot>destroy</on_reboot>,
// per-device boot order, so the BMC decides what a reboot boots.
type libvirtMachine struct {
	socketPath string
	domain     string
	primaryMAC string
	log        *slog.Logger

	mu sync.Mutex
	l  *libvirt.Libvirt // nil or disconnected: dial again on next use

	// rebooting is set from QEMU's guest-reset event until the next Start
	// or Stop: a rebooting server has power, even while libvirt has the
	// domain shut off between on_reboot=destroy and the BMC's restart.
	rebooting atomic.Bool
}

// openLibvirt connects to libvirtd on its unix socket; the socket is a path,
// so this works from inside the BMC's network namespace.
func openLibvirt(socketPath, domain, primaryMAC string, log *slog.Logger) (*libvirtMachine, error) {
	if socketPath == "" {
		socketPath = DefaultLibvirtSocket
	}
	m := &libvirtMachine{socketPath: socketPath, domain: domain, primaryMAC: primaryMAC, log: log}
	if _, _, err := m.lookup(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// client returns a live connection, dialling again when libvirtd went away
// (restarted, or the connection broke): a BMC outlives its management
// daemon's hiccups.
func (m *libvirtMachine) client() (*libvirt.Libvirt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l != nil && m.l.IsConnected() {
		return m.l, nil
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(m.socketPath), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.Connect(); err != nil {
		return nil, fmt.Errorf("while connecting to libvirtd at %s: %w", m.socketPath, err)
	}
	if m.l != nil {
		m.log.Info("reconnected to libvirtd", "socket", m.socketPath)
	}
	m.l = l
	return l, nil
}

func (m *libvirtMachine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l == nil || !m.l.IsConnected() {
		return nil
	}
	return m.l.Disconnect()
}

func (m *libvirtMachine) lookup() (*libvirt.Libvirt, libvirt.Domain, error) {
	l, err := m.client()
	if err != nil {
		return nil, libvirt.Domain{}, err
	}
	d, err := l.DomainLookupByName(m.domain)
	if err != nil {
		return nil, d, fmt.Errorf("while looking up libvirt domain %s: %w", m.domain, err)
	}
	return l, d, nil
}

func (m *libvirtMachine) state() (libvirt.DomainState, error) {
	l, d, err := m.lookup()
	if err != nil {
		return 0, err
	}
	st, _, err := l.DomainGetState(d, 0)
	if err != nil {
		return 0, fmt.Errorf("while reading the state of domain %s: %w", m.domain, err)
	}
	return libvirt.DomainState(st), nil
}

// isOff: shut off, crashed or never started. A domain being shut down still
// draws power.
func isOff(st libvirt.DomainState) bool {
	return st == libvirt.DomainShutoff || st == libvirt.DomainCrashed || st == libvirt.DomainNostate
}

// Rebooting says a guest reboot is under way (see rebooting).
func (m *libvirtMachine) Rebooting() bool { return m.rebooting.Load() }

func (m *libvirtMachine) PoweredOn(context.Context) (bool, error) {
	st, err := m.state()
	if err != nil {
		return false, err
	}
	return !isOff(st), nil
}

// Start redefines the shut-off domain with the boot order, then starts it.
func (m *libvirtMachine) Start(_ context.Context, first BootDevice) error {
	defer m.rebooting.Store(false)
	l, d, err := m.lookup()
	if err != nil {
		return err
	}
	x, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLInactive|libvirt.DomainXMLSecure)
	if err != nil {
		return fmt.Errorf("while reading the XML of domain %s: %w", m.domain, err)
	}
	nx, err := withBootOrder(x, first, m.primaryMAC)
	if err != nil {
		return fmt.Errorf("while setting the boot order of domain %s: %w", m.domain, err)
	}
	if nx != x {
		if d, err = l.DomainDefineXML(nx); err != nil {
			return fmt.Errorf("while redefining domain %s with boot %s first: %w", m.domain, first, err)
		}
	}
	if err := l.DomainCreate(d); err != nil {
		return fmt.Errorf("while starting domain %s: %w", m.domain, err)
	}
	return nil
}

// Stop destroys the domain (pulls the plug) and waits until it is off.
func (m *libvirtMachine) Stop(ctx context.Context) error {
	defer m.rebooting.Store(false)
	l, d, err := m.lookup()
	if err != nil {
		return err
	}
	if err := l.DomainDestroy(d); err != nil {
		if st, serr := m.state(); serr == nil && isOff(st) {
			return nil // it went off by itself meanwhile
		}
		return fmt.Errorf("while destroying domain %s: %w", m.domain, err)
	}
	return m.waitOff(ctx)
}

// Shutdown presses the ACPI power button; the guest decides.
func (m *libvirtMachine) Shutdown(context.Context) error {
	l, d, err := m.lookup()
	if err != nil {
		return err
	}
	if err := l.DomainShutdown(d); err != nil {
		return fmt.Errorf("while sending ACPI shutdown to domain %s: %w", m.domain, err)
	}
	return nil
}

func (m *libvirtMachine) waitOff(ctx context.Context) error {
	deadline := time.Now().Add(offTimeout)
	for {
		st, err := m.state()
		if err != nil {
			return err
		}
		if isOff(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("domain %s still not off after %s", m.domain, offTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shutdownEvent is the data of QEMU's SHUTDOWN monitor event.
type shutdownEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// guestEventOf tells a guest reboot from a guest power-off in a QEMU monitor
// event. libvirt's own lifecycle events cannot: with on_reboot=destroy both
// are "stopped/destroyed"; QEMU's SHUTDOWN reason says which it was.
func guestEventOf(name string, details []byte) (GuestEvent, bool) {
	if name != "SHUTDOWN" {
		return 0, false
	}
	var ev shutdownEvent
	if err := json.Unmarshal(details, &ev); err != nil {
		return 0, false
	}
	switch {
	case ev.Guest && ev.Reason == "guest-reset":
		return GuestReset, true
	case ev.Guest && ev.Reason == "guest-shutdown":
		return GuestPowerOff, true
	}
	return 0, false // host-initiated (destroy, quit): the BMC did it
}

// Backoff for resubscribing after the libvirtd connection broke.
const (
	resubscribeFirst = 500 * time.Millisecond
	resubscribeMax   = 10 * time.Second
)

// GuestEvents subscribes to the domain's QEMU monitor events, and again
// whenever the connection to libvirtd breaks. The subscription is per
// connection and outlives domain restarts. Events that happen while
// libvirtd is unreachable are lost (as a BMC that was rebooting would miss
// them).
func (m *libvirtMachine) GuestEvents(ctx context.Context) (<-chan GuestEvent, error) {
	out := make(chan GuestEvent)
	go func() {
		defer close(out)
		wait := resubscribeFirst
		for again := false; ctx.Err() == nil; again = true {
			raw, err := m.subscribe(ctx)
			if err == nil {
				wait = resubscribeFirst
				if again {
					m.catchUp(ctx, out)
				}
				m.forward(ctx, raw, out)
				if ctx.Err() != nil {
					return
				}
				err = errors.New("the event stream ended (libvirtd connection lost?)")
			}
			m.log.Warn("no QEMU monitor events, subscribing again", "domain", m.domain, "in", wait.String(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, resubscribeMax)
		}
	}()
	return out, nil
}

// catchUp runs after a new subscription: a domain found off may have
// rebooted while nobody listened. It is reported as a reboot, and the
// chassis restarts it only if the BMC still wants it on (a power-off it
// was told to do stays off); a guest power-off in that gap is the one case
// this gets wrong.
func (m *libvirtMachine) catchUp(ctx context.Context, out chan<- GuestEvent) {
	st, err := m.state()
	if err != nil || !isOff(st) {
		return
	}
	m.log.Warn("domain found off after missed QEMU events: treating it as a guest reboot", "domain", m.domain)
	m.rebooting.Store(true)
	select {
	case out <- GuestReset:
	case <-ctx.Done():
	}
}

func (m *libvirtMachine) subscribe(ctx context.Context) (<-chan libvirt.DomainEvent, error) {
	l, err := m.client()
	if err != nil {
		return nil, err
	}
	raw, err := l.SubscribeQEMUEvents(ctx, m.domain)
	if err != nil {
		return nil, fmt.Errorf("while subscribing to QEMU monitor events of domain %s: %w", m.domain, err)
	}
	return raw, nil
}

// forward turns QEMU events into guest events until raw closes. QEMU may
// announce one reboot twice (SeaBIOS resets through two paths in a row), so
// only the first guest event of each run of the domain (its ID) counts.
func (m *libvirtMachine) forward(ctx context.Context, raw <-chan libvirt.DomainEvent, out chan<- GuestEvent) {
	var lastRun int32 = -1
	for ev := range raw {
		m.log.Debug("QEMU monitor event", "domain", m.domain, "run", ev.Domain.ID, "event", ev.Event, "details", string(ev.Details))
		gev, ok := guestEventOf(ev.Event, ev.Details)
		if !ok || ev.Domain.ID == lastRun {
			continue
		}
		lastRun = ev.Domain.ID
		if gev == GuestReset {
			m.rebooting.Store(true)
		}
		// QEMU announces the shutdown before libvirt destroys the domain;
		// the BMC may only redefine it once it is off.
		if err := m.waitOff(ctx); err != nil {
			if !errors.Is(err, context.Canceled) {
				m.log.Error("domain did not stop after a guest event", "domain", m.domain, "event", gev.String(), "err", err)
			}
			continue
		}
		select {
		case out <- gev:
		case <-ctx.Done():
			return
		}
	}
}
