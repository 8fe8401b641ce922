package bmc

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// The fake driver is for unit and scale tests; these tests check that it
// behaves like the real drivers where callers can tell.
func TestFakeDriver(t *testing.T) {
	name := t.Name()
	t.Cleanup(func() { ForgetFake(name) })
	ctx := context.Background()
	c, err := Open(ctx, "fake://"+name, Options{Node: testNode})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctx, ActionCycle); err != nil {
		t.Fatal(err)
	}
	if Fake(name).Power() != PowerOn {
		t.Fatal("cycle did not power the fake on")
	}
	Fake(name).ForgetFlags(1)
	if v, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE}); err != nil || !v {
		t.Fatalf("SetBoot = %v, %v", v, err)
	}
	if Fake(name).BootWrites() != 2 || !Fake(name).Flags().Valid {
		t.Fatalf("fake saw %d writes, flags %v", Fake(name).BootWrites(), Fake(name).Flags())
	}
	Fake(name).SetCannotReportFlags(true)
	if v, err := c.SetBoot(ctx, BootFlags{Device: DeviceDisk}); err != nil || v {
		t.Fatalf("SetBoot on a BMC that cannot report = %v, %v; want unverified", v, err)
	}

	con, err := c.Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Console(ctx); !errors.Is(err, ErrConsoleBusy) {
		t.Fatalf("second console: %v", err)
	}
	go io.WriteString(Fake(name).Serial(), "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(con, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("console read %q, %v", buf, err)
	}
	con.Close()

	Fake(name).SetDead(true)
	_, err = c.PowerState(ctx)
	if err == nil || !strings.Contains(err.Error(), "node "+testNode+": BMC fake://"+name) {
		t.Fatalf("dead fake: err = %v", err)
	}
}
