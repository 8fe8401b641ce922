package bmc

import (
	"context"
	"testing"
)

// Benchmarks print figures (no assertions on speed): one operation is a
// whole session — capabilities, open session, RAKP 1-4, privilege, the
// command, close — against go-ipmi's server on loopback.
func BenchmarkIPMIPowerState(b *testing.B) {
	tb := startGoIPMI(b, false)
	c, err := Open(context.Background(), "ipmi://"+tb.addr, testOpts(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := c.PowerState(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIPMISetBootVerified(b *testing.B) {
	tb := startGoIPMI(b, false)
	c, err := Open(context.Background(), "ipmi://"+tb.addr, testOpts(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if v, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE, EFI: true}); err != nil || !v {
			b.Fatal(v, err)
		}
	}
}

func BenchmarkIPMIPowerStateOpenIPMISim(b *testing.B) {
	sim := startIPMISim(b)
	c, err := Open(context.Background(), "ipmi://"+sim.addr, testOpts(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := c.PowerState(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
