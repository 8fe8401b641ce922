package main

import (
	"context"
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/simulator/vbmc"
)

//go:embed sushy_power.py
var sushyPower []byte

// benchRedfish measures power status over Redfish, next to the IPMI
// figures: Racker's driver (one session kept; TLS with the key pinned)
// against OpenStack's sushy (python3-sushy, what Ironic uses), both on the
// same virtual BMC over loopback, with one client and with 20 at once.
func benchRedfish(r *results, work string, short bool) error {
	d := 5 * time.Second
	if short {
		d = 2 * time.Second
	}
	if _, err := os.Stat(debianPython); err != nil {
		return fmt.Errorf("%s: %w (Debian's python3 with python3-sushy; make deps installs it)", debianPython, err)
	}
	user, pass := "bench", "bench-password"
	passFile := filepath.Join(work, "redfish_password")
	script := filepath.Join(work, "sushy_power.py")
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(script, sushyPower, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan netip.AddrPort, 1)
	done := make(chan error, 1)
	go func() {
		done <- vbmc.Run(ctx, vbmc.Config{Name: "bench", Machine: &memMachine{on: true}, Static: netip.MustParsePrefix("127.0.0.1/8"),
			Protocols: []vbmc.Protocol{vbmc.ProtocolRedfish}, RedfishPort: -1, MaxSessions: 4 * bmcParallel,
			User: user, Password: pass, Logger: logger.With("component", "vbmc"),
			OnRedfishListen: func(a netip.AddrPort) { listening <- a }})
	}()
	defer func() { cancel(); <-done }()
	var addr netip.AddrPort
	select {
	case addr = <-listening:
	case err := <-done:
		return fmt.Errorf("the bench BMC stopped: %w", err)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the bench BMC did not start")
	}
	url := "redfish://" + addr.String()
	opts := bmc.Options{Credentials: inventory.Credentials{User: user, Password: pass}, Node: "bench", Pins: &bmc.MemoryPins{}}

	c, err := bmc.Open(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	one, err := opsPerSecond(d, 1, func() error { _, err := c.PowerState(ctx); return err })
	if err != nil {
		return fmt.Errorf("racker power status over Redfish: %w", err)
	}
	// 20 callers share one controller (one session) and Racker's bound of
	// Options.MaxSessions (2) requests at a time per BMC, as in the IPMI
	// figure; the sushy threads each have their own client and session.
	par, err := opsPerSecond(d, bmcParallel, func() error { _, err := c.PowerState(ctx); return err })
	if err != nil {
		return fmt.Errorf("racker power status over Redfish, %d in parallel: %w", bmcParallel, err)
	}
	sushyOne, err := runSushy(script, addr, user, passFile, d, 1)
	if err != nil {
		return err
	}
	sushyPar, err := runSushy(script, addr, user, passFile, d, bmcParallel)
	if err != nil {
		return err
	}
	sec := "Redfish power status against one BMC"
	r.add(row{Section: sec, Figure: "ops/s, 1 client, session kept", Unit: "/s", Racker: one, Peer: sushyOne, PeerIs: "sushy (python3)", HigherIsBetter: true, Headline: true})
	r.add(row{Section: sec, Figure: fmt.Sprintf("ops/s, %d in parallel", bmcParallel), Unit: "/s", Racker: par, Peer: sushyPar,
		PeerIs: fmt.Sprintf("sushy, %d threads", bmcParallel), HigherIsBetter: true, Note: "Racker: 2 requests at a time per BMC"})
	return nil
}

// debianPython is Debian's interpreter, which sees python3-sushy (a python3
// earlier on PATH may be a pyenv shim that does not).
const debianPython = "/usr/bin/python3"

// runSushy runs the sushy peer for d with threads clients; it prints ops/s.
func runSushy(script string, addr netip.AddrPort, user, passFile string, d time.Duration, threads int) (float64, error) {
	cmd := exec.Command(debianPython, script, "https://"+addr.String(), user, passFile,
		strconv.FormatFloat(d.Seconds(), 'f', 1, 64), strconv.Itoa(threads))
	// python3-requests lets REQUESTS_CA_BUNDLE override verify=False.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return 0, fmt.Errorf("sushy peer (%d threads): %w: %s", threads, err, stderr)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0, fmt.Errorf("sushy peer printed %q: %w", out, err)
	}
	return v, nil
}
