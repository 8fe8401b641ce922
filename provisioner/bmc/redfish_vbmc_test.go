package bmc

// These tests drive the Redfish driver against the simulator's virtual BMC
// (simulator/vbmc) running in-process on loopback, as goipmi_server_test.go
// does with go-ipmi's server: a server Racker's client did not write (the
// vBMC is itself checked with OpenStack's sushy). Only the tests import the
// simulator; the driver does not. The machine behind the vBMC is in memory.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/simulator/vbmc"
)

// memMachine is the hardware behind the test vBMC: power and the device
// each start used.
type memMachine struct {
	mu     sync.Mutex
	on     bool
	starts []vbmc.BootDevice
	downs  int // graceful shutdowns
}

func (m *memMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}
func (m *memMachine) Start(_ context.Context, d vbmc.BootDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = true
	m.starts = append(m.starts, d)
	return nil
}
func (m *memMachine) Stop(context.Context) error {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	return nil
}
func (m *memMachine) Shutdown(context.Context) error {
	m.mu.Lock()
	m.on = false
	m.downs++
	m.mu.Unlock()
	return nil
}
func (m *memMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	ch := make(chan vbmc.GuestEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (m *memMachine) shutdowns() int { m.mu.Lock(); defer m.mu.Unlock(); return m.downs }

// startsAfter is the start log once it has n entries (or after 5 s): the
// vBMC answers a power request before the machine has started, as IPMI
// allows, so the last start may still be on its way when Power returns.
func (m *memMachine) startsAfter(n int) string {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		have := len(m.starts)
		m.mu.Unlock()
		if have >= n {
			break
		}
	}
	return m.startLog()
}

func (m *memMachine) startLog() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s []string
	for _, d := range m.starts {
		s = append(s, d.String())
	}
	return strings.Join(s, " ")
}

// testVBMC is a running virtual BMC with both protocols.
type testVBMC struct {
	m       *memMachine
	redfish netip.AddrPort
	ipmi    netip.AddrPort
}

func (v *testVBMC) url() string { return "redfish://" + v.redfish.String() }

func startVBMC(t testing.TB, cfg vbmc.Config) *testVBMC {
	t.Helper()
	v := &testVBMC{m: &memMachine{}}
	cfg.Name, cfg.Machine = "test-node", v.m
	cfg.Static, cfg.Port, cfg.RedfishPort = netip.MustParsePrefix("127.0.0.1/8"), -1, -1
	cfg.User, cfg.Password = testUser, testPassword
	if cfg.Protocols == nil {
		cfg.Protocols = []vbmc.Protocol{vbmc.ProtocolIPMI, vbmc.ProtocolRedfish}
	}
	ipmiAt, rfAt := make(chan netip.AddrPort, 1), make(chan netip.AddrPort, 1)
	cfg.OnListen = func(a netip.AddrPort) { ipmiAt <- a }
	cfg.OnRedfishListen = func(a netip.AddrPort) { rfAt <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vbmc.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("vbmc.Run: %v", err)
		}
	})
	for _, p := range cfg.Protocols {
		at, addr := rfAt, &v.redfish
		if p == vbmc.ProtocolIPMI {
			at, addr = ipmiAt, &v.ipmi
		}
		select {
		case *addr = <-at:
		case err := <-done:
			t.Fatalf("the vBMC stopped: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("the vBMC never listened")
		}
	}
	return v
}

// sessions counts the vBMC's live Redfish sessions (Basic auth, so the
// count does not include itself).
func (v *testVBMC) sessions(t *testing.T) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+v.redfish.String()+"/redfish/v1/SessionService/Sessions", nil)
	req.SetBasicAuth(testUser, testPassword)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var col struct {
		Count int `json:"Members@odata.count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&col); err != nil {
		t.Fatal(err)
	}
	return col.Count
}

func redfishOpts(t testing.TB, logs *bytes.Buffer) Options {
	o := testOpts(t, logs)
	o.Pins = &MemoryPins{}
	return o
}

func TestRedfishPowerAgainstTheVBMC(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	c := openTest(t, v.url(), redfishOpts(t, nil))
	ctx := context.Background()
	state := func() PowerState {
		t.Helper()
		s, err := c.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := state(); s != PowerOff {
		t.Fatalf("power = %s, want off", s)
	}
	for _, step := range []struct {
		a    PowerAction
		want PowerState
	}{
		{ActionOn, PowerOn}, {ActionOn, PowerOn}, // on when on: nothing (the vBMC would answer 409)
		{ActionReset, PowerOn}, {ActionCycle, PowerOn},
		{ActionSoftOff, PowerOff}, {ActionOff, PowerOff}, // off when off: nothing
		{ActionCycle, PowerOn}, // cycle of a node that is off powers it on
		{ActionOff, PowerOff},
	} {
		if err := c.Power(ctx, step.a); err != nil {
			t.Fatalf("power %s: %v", step.a, err)
		}
		if s := state(); s != step.want {
			t.Fatalf("after %s: power %s, want %s", step.a, s, step.want)
		}
	}
	// on, reset (restart), cycle (PowerCycle), cycle from off (on).
	if got := v.m.startsAfter(4); got != "default default default default" {
		t.Fatalf("starts = %q", got)
	}
	if n := v.m.shutdowns(); n != 1 {
		t.Fatalf("graceful shutdowns = %d, want 1", n)
	}
	err := c.Power(ctx, ActionReset)
	if err == nil || !strings.Contains(err.Error(), "node is off") {
		t.Fatalf("reset of a node that is off: %v", err)
	}
}

// TestRedfishBootOverrideRoundTrip: every combination reads back verified,
// through Redfish and through IPMI on the same vBMC, and the machine boots
// what was asked.
func TestRedfishBootOverrideRoundTrip(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	c := openTest(t, v.url(), redfishOpts(t, nil))
	ipmi := openTest(t, "ipmi://"+v.ipmi.String(), testOpts(t, nil))
	ctx := context.Background()
	for _, f := range []BootFlags{
		{Device: DevicePXE, EFI: true},
		{Device: DevicePXE, Persistent: true},
		{Device: DeviceDisk, Persistent: true, EFI: true},
		{Device: DeviceDisk},
		{Device: DeviceNone},
	} {
		ok, err := c.SetBoot(ctx, f)
		if err != nil || !ok {
			t.Fatalf("SetBoot(%s) = %v, %v; want verified", f, ok, err)
		}
		want, _ := f.normalize()
		got, err := c.Boot(ctx)
		if err != nil || !sameRedfish(want, got, true) {
			t.Fatalf("Redfish Boot() after SetBoot(%s) = %s, %v", f, got, err)
		}
		viaIPMI, err := ipmi.Boot(ctx)
		if err != nil || (want.Valid && !sameRequest(want, viaIPMI)) || viaIPMI.Valid != want.Valid {
			t.Fatalf("IPMI reads %s after Redfish SetBoot(%s) (err %v)", viaIPMI, f, err)
		}
	}
	// Next boot only: used by one start.
	if _, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE, EFI: true}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []PowerAction{ActionOn, ActionCycle} {
		if err := c.Power(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Boot(ctx)
	if err != nil || got.Valid || got.Device != DevicePXE {
		t.Fatalf("after the boot the override reads %s, %v; want pxe, not valid", got, err)
	}
	// Persistent disk: every start.
	if _, err := c.SetBoot(ctx, BootFlags{Device: DeviceDisk, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Power(ctx, ActionCycle); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.m.startsAfter(4); got != "pxe default disk disk" {
		t.Fatalf("starts = %q, want pxe default disk disk", got)
	}
}

func TestRedfishDiag(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	c := openTest(t, v.url(), redfishOpts(t, nil))
	ctx := context.Background()
	if _, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE, EFI: true}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Diag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Driver != "redfish" || d.Address != v.redfish.String() || d.Manufacturer != "Racker" || d.Model == "" ||
		!strings.HasPrefix(d.SerialNumber, "RSIM") || d.BIOSVersion == "" || d.Firmware != "1.00" || d.BootMode != "UEFI" ||
		d.Health != "OK" || d.Power != PowerOff || !d.BootKnown || d.Boot.Device != DevicePXE || !d.Boot.EFI ||
		d.SOLAvailable || !strings.HasPrefix(d.TLS, "pinned sha256:") || !strings.Contains(d.Protocol, "session") ||
		d.MAC == "" || len(d.Problems) != 0 {
		t.Fatalf("Diag = %+v", d)
	}
}

func TestRedfishConsoleSaysThereIsNone(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	c := openTest(t, v.url(), redfishOpts(t, nil))
	_, err := c.Console(context.Background())
	if !errors.Is(err, ErrNoConsole) || !strings.Contains(err.Error(), "node "+testNode) || !strings.Contains(err.Error(), "IPMI") {
		t.Fatalf("Console: %v", err)
	}
}

func TestRedfishWrongPassword(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	var logs bytes.Buffer
	opts := redfishOpts(t, &logs)
	opts.Credentials.Password = "wrong-Passw0rd"
	c := openTest(t, v.url(), opts)
	start := time.Now()
	_, err := c.PowerState(context.Background())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v; want ErrAuth", err)
	}
	msg := err.Error()
	for _, want := range []string{"node " + testNode, "BMC redfish://" + v.redfish.String(), "POST /redfish/v1/SessionService/Sessions", "HTTP 401", "authentication failed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(logs.String(), "try failed") || time.Since(start) > 5*time.Second {
		t.Errorf("a refused password was retried:\n%s", logs.String())
	}
	for _, secret := range []string{"wrong-Passw0rd", testPassword} {
		if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a password leaked into the error or logs")
		}
	}
}

// TestRedfishSessionExpiresAndCloseLogsOut: an idle session the BMC ended
// is replaced on the next operation; Close frees the BMC's slot.
func TestRedfishSessionExpiresAndCloseLogsOut(t *testing.T) {
	v := startVBMC(t, vbmc.Config{SessionTimeout: time.Second})
	var logs bytes.Buffer
	c, err := Open(context.Background(), v.url(), redfishOpts(t, &logs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := v.sessions(t); n != 1 {
		t.Fatalf("%d sessions open, want 1 (one per controller, kept)", n)
	}
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := v.sessions(t); n != 1 {
		t.Fatalf("%d sessions after a second operation, want the same 1", n)
	}
	time.Sleep(1500 * time.Millisecond) // past the BMC's 1 s session timeout
	if n := v.sessions(t); n != 0 {
		t.Fatalf("%d sessions after the timeout, want 0", n)
	}
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatalf("after the session expired: %v", err)
	}
	if !strings.Contains(logs.String(), "logging in again") {
		t.Fatalf("no re-login logged:\n%s", logs.String())
	}
	c.Close()
	if n := v.sessions(t); n != 0 {
		t.Fatalf("%d sessions after Close, want 0 (logged out)", n)
	}
}

func TestRedfishPinsTheCertificateOnFirstUse(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	ctx := context.Background()
	pins := &FilePins{Path: t.TempDir() + "/bmc-pins.json"}
	opts := redfishOpts(t, nil)
	opts.Pins = pins
	c := openTest(t, v.url(), opts)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := pins.List(); len(got) != 1 || got[0] != v.redfish.String() {
		t.Fatalf("pinned %v, want %s", got, v.redfish)
	}
	// Another process, same store: the same key is accepted.
	c2 := openTest(t, v.url(), opts)
	if _, err := c2.PowerState(ctx); err != nil {
		t.Fatalf("with the pinned key: %v", err)
	}

	// A different key on the same address (another BMC, or someone else).
	impostor := &MemoryPins{}
	impostor.Pin(v.redfish.String(), "sha256:00")
	var logs bytes.Buffer
	opts3 := redfishOpts(t, &logs)
	opts3.Pins = impostor
	c3 := openTest(t, v.url(), opts3)
	_, err := c3.PowerState(ctx)
	var pe *PinMismatchError
	if !errors.Is(err, ErrCertificateChanged) || !errors.As(err, &pe) || pe.Pinned != "sha256:00" || !strings.HasPrefix(pe.Got, "sha256:") {
		t.Fatalf("err = %v; want a pin mismatch", err)
	}
	if !strings.Contains(err.Error(), "node "+testNode) || strings.Contains(logs.String(), "try failed") {
		t.Fatalf("error %q: want the node named and no retries", err)
	}

	// Insecure: no check, no pin written.
	opts.Pins, opts.Insecure = impostor, true
	c4 := openTest(t, v.url(), opts)
	if _, err := c4.PowerState(ctx); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if d, _ := c4.Diag(ctx); d.TLS != "not checked (insecure)" {
		t.Fatalf("insecure Diag.TLS = %q", d.TLS)
	}
}

func TestRedfishOnlyBMCAndIPMIAgainstIt(t *testing.T) {
	v := startVBMC(t, vbmc.Config{Protocols: []vbmc.Protocol{vbmc.ProtocolRedfish}})
	c := openTest(t, v.url(), redfishOpts(t, nil))
	if err := c.Power(context.Background(), ActionOn); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.PowerState(context.Background()); s != PowerOn {
		t.Fatalf("power = %s", s)
	}
}

func TestRedfishURLs(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	ctx := context.Background()
	// The system named in the URL, as Metal3 writes it.
	c := openTest(t, v.url()+"/redfish/v1/Systems/system", redfishOpts(t, nil))
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	// A system that does not exist: resource and status in the error, no retries.
	c = openTest(t, v.url()+"/redfish/v1/Systems/1", redfishOpts(t, nil))
	_, err := c.PowerState(ctx)
	var re *RedfishError
	if !errors.As(err, &re) || re.Status != 404 || re.Resource != "/redfish/v1/Systems/1" ||
		!strings.Contains(err.Error(), "GET /redfish/v1/Systems/1: HTTP 404 Not Found") || strings.Contains(err.Error(), "tries") {
		t.Fatalf("err = %v", err)
	}
	for _, u := range []string{"redfish://", "redfish://10.0.0.1:0", "redfish://10.0.0.1/redfish/v1/Managers/bmc"} {
		if _, err := Open(ctx, u, Options{Node: testNode}); err == nil || !strings.Contains(err.Error(), "node "+testNode) {
			t.Errorf("Open(%q): %v", u, err)
		}
	}
}

// TestSoftOffOverIPMIToo: the new action reaches the same ACPI shutdown
// through the IPMI driver (Chassis Control 05h).
func TestSoftOffOverIPMIToo(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	c := openTest(t, "ipmi://"+v.ipmi.String(), testOpts(t, nil))
	ctx := context.Background()
	for _, a := range []PowerAction{ActionOn, ActionSoftOff} {
		if err := c.Power(ctx, a); err != nil {
			t.Fatalf("power %s: %v", a, err)
		}
	}
	if s, _ := c.PowerState(ctx); s != PowerOff || v.m.shutdowns() != 1 {
		t.Fatalf("after soft-off over IPMI: power %s, %d graceful shutdowns", s, v.m.shutdowns())
	}
}
