package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/inventory"
)

const testNode = "00:11:22:33:44:10"

func testOpts(t testing.TB, logs *bytes.Buffer) Options {
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	return Options{
		Credentials: inventory.Credentials{User: testUser, Password: testPassword},
		Node:        testNode,
		Logger:      slog.New(h),
		TryTimeout:  2 * time.Second,
		Backoff:     50 * time.Millisecond,
	}
}

func openTest(t *testing.T, rawURL string, opts Options) Controller {
	t.Helper()
	c, err := Open(context.Background(), rawURL, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", rawURL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIPMIPowerAgainstGoIPMIServer(t *testing.T) {
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	ctx := context.Background()

	if s, err := c.PowerState(ctx); err != nil || s != PowerOff {
		t.Fatalf("PowerState = %q, %v; want off", s, err)
	}
	if err := c.Power(ctx, ActionOn); err != nil {
		t.Fatal(err)
	}
	if s, err := c.PowerState(ctx); err != nil || s != PowerOn {
		t.Fatalf("after on: PowerState = %q, %v; want on", s, err)
	}
	if err := c.Power(ctx, ActionCycle); err != nil {
		t.Fatal(err)
	}
	if got, _ := tb.chassis.counts(); got != 1 {
		t.Fatalf("BMC saw %d power cycles, want 1", got)
	}
	if err := c.Power(ctx, ActionReset); err != nil {
		t.Fatal(err)
	}
	if _, got := tb.chassis.counts(); got != 1 {
		t.Fatalf("BMC saw %d hard resets, want 1", got)
	}
	if err := c.Power(ctx, ActionOff); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.PowerState(ctx); s != PowerOff {
		t.Fatalf("after off: PowerState = %q; want off", s)
	}
	// A cycle of a node that is off powers it on rather than failing.
	if err := c.Power(ctx, ActionCycle); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.PowerState(ctx); s != PowerOn {
		t.Fatalf("cycle from off: PowerState = %q; want on", s)
	}
}

func TestIPMIBootFlagsRoundTrip(t *testing.T) {
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	ctx := context.Background()

	if f, err := c.Boot(ctx); err != nil || f.Valid || f.Device != DeviceNone {
		t.Fatalf("fresh BMC: Boot = %v, %v; want no valid override", f, err)
	}
	for _, want := range []BootFlags{
		{Device: DevicePXE, EFI: true},
		{Device: DevicePXE, Persistent: true, EFI: true},
		{Device: DeviceDisk, Persistent: true},
		{Device: DeviceDisk},
	} {
		verified, err := c.SetBoot(ctx, want)
		if err != nil || !verified {
			t.Fatalf("SetBoot(%v) = %v, %v; want verified", want, verified, err)
		}
		got, err := c.Boot(ctx)
		want.Valid = true
		if err != nil || got != want {
			t.Fatalf("Boot after SetBoot(%v) = %v, %v", want, got, err)
		}
	}
}

func TestIPMIForgetfulBMCIsRetried(t *testing.T) {
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	tb.chassis.mu.Lock()
	tb.chassis.forget = 2 // loses two writes, keeps the third
	tb.chassis.mu.Unlock()

	verified, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE})
	if err != nil || !verified {
		t.Fatalf("SetBoot = %v, %v; want verified after retries", verified, err)
	}
	if n := tb.chassis.bootWrites(); n != 3 {
		t.Fatalf("BMC saw %d boot flag writes, want 3", n)
	}
}

func TestIPMIBMCThatNeverKeepsFlagsIsUnverified(t *testing.T) {
	tb := startGoIPMI(t, false)
	var logs bytes.Buffer
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, &logs))
	tb.chassis.mu.Lock()
	tb.chassis.forget = -1
	tb.chassis.mu.Unlock()

	verified, err := c.SetBoot(context.Background(), BootFlags{Device: DeviceDisk, Persistent: true})
	if err != nil || verified {
		t.Fatalf("SetBoot = %v, %v; want unverified without error", verified, err)
	}
	if n := tb.chassis.bootWrites(); n != 3 {
		t.Fatalf("BMC saw %d boot flag writes, want a bounded 3", n)
	}
	if !strings.Contains(logs.String(), "unverified") {
		t.Fatalf("no warning logged:\n%s", logs.String())
	}
}

func TestIPMIWrongPassword(t *testing.T) {
	tb := startGoIPMI(t, false)
	var logs bytes.Buffer
	opts := testOpts(t, &logs)
	opts.Credentials.Password = "wrong-Passw0rd"
	c := openTest(t, "ipmi://"+tb.addr, opts)

	_, err := c.PowerState(context.Background())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v; want ErrAuth", err)
	}
	msg := err.Error()
	for _, want := range []string{"node " + testNode, "BMC " + tb.addr, "authentication failed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	for _, secret := range []string{"wrong-Passw0rd", testPassword} {
		if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a password leaked into the error or logs")
		}
	}
}

func TestIPMIWrongUser(t *testing.T) {
	tb := startGoIPMI(t, false)
	opts := testOpts(t, nil)
	opts.Credentials.User = "nobody"
	c := openTest(t, "ipmi://"+tb.addr, opts)
	if _, err := c.PowerState(context.Background()); !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v; want ErrAuth", err)
	}
}

func TestIPMINoAnswer(t *testing.T) {
	// A loopback UDP port that is bound but never answers, like a BMC that
	// is powered but hung (a closed port would answer ICMP unreachable).
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	opts := testOpts(t, nil)
	opts.TryTimeout = 300 * time.Millisecond
	c := openTest(t, "ipmi://"+pc.LocalAddr().String(), opts)

	_, err = c.PowerState(context.Background())
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v; want ErrNoAnswer", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "node "+testNode+": BMC "+pc.LocalAddr().String()) || !strings.Contains(msg, "after 3 tries in") {
		t.Fatalf("error %q does not name node, BMC and tries", msg)
	}
}

func TestIPMIDiag(t *testing.T) {
	tb := startGoIPMI(t, true)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	ctx := context.Background()
	if _, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE, EFI: true}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Diag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != 32 || d.ProductID != 0x0b0b || d.Firmware != "2.15" || d.IPMIVersion != "2.0" || d.Power != PowerOff ||
		!d.BootKnown || d.Boot.Device != DevicePXE || !d.Boot.EFI || !d.SOLAvailable || d.Address != tb.addr {
		t.Fatalf("Diag = %+v", d)
	}
}

func TestIPMIConsoleRelaysBothWaysAndRefusesASecond(t *testing.T) {
	tb := startGoIPMI(t, true)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	ctx := context.Background()

	con, err := c.Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()

	// A second console, from another controller of the same BMC, is refused.
	other := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	if _, err := other.Console(ctx); !errors.Is(err, ErrConsoleBusy) {
		t.Fatalf("second console: err = %v; want ErrConsoleBusy", err)
	}

	// Another process would not share this process's console registry: the
	// same BMC under another spelling of its address shows that the BMC
	// itself refuses a second SOL activation, and that Racker says so.
	_, port, _ := net.SplitHostPort(tb.addr)
	mapped := openTest(t, "ipmi://localhost:"+port, testOpts(t, nil))
	if _, err := mapped.Console(ctx); !errors.Is(err, ErrConsoleBusy) {
		t.Fatalf("second console via the BMC: err = %v; want ErrConsoleBusy", err)
	}

	tb.serial.FeedRX([]byte("login: "))
	buf := make([]byte, 0, 64)
	tmp := make([]byte, 64)
	for !bytes.Contains(buf, []byte("login: ")) {
		n, err := con.Read(tmp)
		if err != nil {
			t.Fatalf("console read: %v (got %q)", err, buf)
		}
		buf = append(buf, tmp[:n]...)
	}
	if _, err := io.WriteString(con, "root\r"); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(tb.serial.TXString(), "root\r") {
		time.Sleep(20 * time.Millisecond)
	}
	if err := con.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing frees the console for the next user.
	again, err := other.Console(ctx)
	if err != nil {
		t.Fatalf("console after close: %v", err)
	}
	again.Close()
}

func TestIPMISessionsPerBMCAreBounded(t *testing.T) {
	tb := startGoIPMI(t, false)
	tb.chassis.mu.Lock()
	tb.chassis.slow = true
	tb.chassis.mu.Unlock()
	opts := testOpts(t, nil)
	opts.MaxSessions = 2
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		// Separate controllers, as an orchestrator with one per goroutine
		// would have: the bound is per BMC address, not per controller.
		c := openTest(t, "ipmi://"+tb.addr, opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.PowerState(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tb.chassis.mu.Lock()
	defer tb.chassis.mu.Unlock()
	if tb.chassis.maxActive > 2 || tb.chassis.maxActive < 1 {
		t.Fatalf("%d sessions ran at once; want at most 2", tb.chassis.maxActive)
	}
}

// The bytes on the wire: parameter 3 "don't clear the valid bit after
// 60 s" first, then parameter 5 exactly as EncodeBootFlags says.
func TestIPMISetBootWireBytes(t *testing.T) {
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	if v, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE, EFI: true}); err != nil || !v {
		t.Fatalf("SetBoot = %v, %v", v, err)
	}
	got := fmt.Sprintf("% x", tb.setBootOptions())
	if want := "[03 08 05 a0 04 00 00 00]"; got != want {
		t.Fatalf("Set System Boot Options requests = %s, want %s", got, want)
	}
}

func TestIPMIBusyBMCIsRetriedABoundedNumberOfTimes(t *testing.T) {
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	tb.mu.Lock()
	tb.busy = 2
	tb.mu.Unlock()
	if s, err := c.PowerState(context.Background()); err != nil || s != PowerOff {
		t.Fatalf("PowerState after two \"node busy\" answers = %q, %v", s, err)
	}
	tb.mu.Lock()
	tb.busy = 5 // more than the 3 tries
	tb.mu.Unlock()
	_, err := c.PowerState(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 3 tries") {
		t.Fatalf("err = %v; want the busy BMC given up on after 3 tries", err)
	}
	tb.mu.Lock()
	left := tb.busy
	tb.mu.Unlock()
	if left != 2 {
		t.Fatalf("BMC was asked %d times, want 3", 5-left)
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"ipmi://", "ipmi://10.0.0.1:0", "ipmi://[fd00::1]:623", "ftp://x", "fake://", "libvirt://otherhost/dom", "libvirt:///"} {
		if _, err := Open(context.Background(), u, Options{Node: testNode}); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		} else if !strings.Contains(err.Error(), "node "+testNode) {
			t.Errorf("Open(%q): error %q does not name the node", u, err)
		}
	}
}
