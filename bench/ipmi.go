package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/simulator/vbmc"
)

// memMachine is an in-memory machine behind the bench's BMC: the IPMI server
// and the network are real, only the hardware is not (what is measured is
// the IPMI client side).
type memMachine struct {
	mu sync.Mutex
	on bool
}

func (m *memMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}
func (m *memMachine) Start(context.Context, vbmc.BootDevice) error { m.set(true); return nil }
func (m *memMachine) Stop(context.Context) error                   { m.set(false); return nil }
func (m *memMachine) Shutdown(context.Context) error               { m.set(false); return nil }
func (m *memMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	ch := make(chan vbmc.GuestEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
func (m *memMachine) set(on bool) { m.mu.Lock(); m.on = on; m.mu.Unlock() }

// benchIPMI compares `power status` through Racker's go-ipmi client (one
// session kept, and a new session per operation) with ipmitool processes
// (what older tools ran per call), against the same virtual BMC on loopback.
func benchIPMI(r *results, work string, short bool) error {
	d := 5 * time.Second
	if short {
		d = 2 * time.Second
	}
	user, pass := "bench", "bench-password"
	passFile := filepath.Join(work, "ipmi_password")
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan netip.AddrPort, 1)
	go vbmc.Run(ctx, vbmc.Config{Name: "bench", Machine: &memMachine{on: true}, Static: netip.MustParsePrefix("127.0.0.1/8"),
		Port: -1, User: user, Password: pass, Logger: logger.With("component", "vbmc"),
		OnListen: func(a netip.AddrPort) { listening <- a }})
	var addr netip.AddrPort
	select {
	case addr = <-listening:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the bench BMC did not start")
	}
	url := fmt.Sprintf("ipmi://%s", addr)
	opts := bmc.Options{Credentials: inventory.Credentials{User: user, Password: pass}, Node: "bench"}

	rate := func(op func() error) (float64, error) { return opsPerSecond(d, 1, op) }
	c, err := bmc.Open(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	kept, err := rate(func() error { _, err := c.PowerState(ctx); return err })
	if err != nil {
		return fmt.Errorf("racker power status: %w", err)
	}
	fresh, err := rate(func() error {
		c, err := bmc.Open(ctx, url, opts)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.PowerState(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("racker power status, new session: %w", err)
	}
	tool, err := rate(func() error {
		out, err := exec.Command("ipmitool", "-I", "lanplus", "-C", "17", "-H", addr.Addr().String(), "-p", fmt.Sprint(addr.Port()),
			"-U", user, "-f", passFile, "power", "status").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ipmitool: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// 20 callers at once on one controller: Racker keeps its bound of
	// Options.MaxSessions (2) sessions per BMC, so they queue, as they would
	// in the orchestrator; the ipmitool processes have no bound.
	par, err := opsPerSecond(d, bmcParallel, func() error { _, err := c.PowerState(ctx); return err })
	if err != nil {
		return fmt.Errorf("racker power status, %d in parallel: %w", bmcParallel, err)
	}
	toolPar, err := opsPerSecond(d, bmcParallel, func() error {
		out, err := exec.Command("ipmitool", "-I", "lanplus", "-C", "17", "-H", addr.Addr().String(), "-p", fmt.Sprint(addr.Port()),
			"-U", user, "-f", passFile, "power", "status").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ipmitool: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sec := "IPMI power status against one BMC"
	r.add(row{Section: sec, Figure: "ops/s, session kept", Unit: "/s", Racker: kept, Peer: tool, PeerIs: "ipmitool process", HigherIsBetter: true})
	r.add(row{Section: sec, Figure: "ops/s, new session each", Unit: "/s", Racker: fresh, Peer: tool, PeerIs: "ipmitool process", HigherIsBetter: true})
	r.add(row{Section: sec, Figure: fmt.Sprintf("ops/s, %d in parallel", bmcParallel), Unit: "/s", Racker: par, Peer: toolPar,
		PeerIs: fmt.Sprintf("%d ipmitool processes", bmcParallel), HigherIsBetter: true, Note: "Racker: 2 sessions at a time per BMC"})
	return nil
}

// bmcParallel is how many callers the parallel BMC figures run at once.
const bmcParallel = 20

// opsPerSecond runs op from n goroutines for d and returns the completed
// operations per second; the first error ends the run.
func opsPerSecond(d time.Duration, n int, op func() error) (float64, error) {
	var (
		mu    sync.Mutex
		total int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for time.Since(start) < d {
				if err := op(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				k++
			}
			mu.Lock()
			total += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(total) / time.Since(start).Seconds(), nil
}
