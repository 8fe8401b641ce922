package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// startBMC runs go-ipmi's reference BMC server in-process on loopback, with
// the example rack's credentials and a serial port the test controls.
func startBMC(t *testing.T, oem string) (addr string, chassis *mock.Chassis, serial *mock.FakeConsoleConn) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(oem, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(string(b), "\n")
	}
	h := mock.New()
	serial = &mock.FakeConsoleConn{}
	h.SetConsole(&mock.Console{Conn: serial})
	var guid [16]byte
	b := gobmc.New(gobmc.DeviceInfo{DeviceID: 32, IPMIVersion: 0x02, ManufacturerID: 0x157, FirmwareMajor: 1}, guid, h, gobmc.WithClock(clock.Real))
	u, err := b.Users.Add(2, read("ipmi_user"))
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(read("ipmi_password")))
	u.Enabled = true
	u.ChannelAccess[1] = gobmc.UserChannelAccess{MaxPrivilege: gobmc.PrivilegeLevelAdministrator, Enabled: true}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer(b, udp.Wrap(pc))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); srv.Close(); <-done })
	return pc.LocalAddr().String(), h.Chassis().(*mock.Chassis), serial
}

func TestResolveBMCFromPlanAndLeases(t *testing.T) {
	oem, state := exampleRack(t)
	env := &Env{Stdout: io.Discard, Stderr: io.Discard, OEMDir: oem, StateDir: state, MgmtMAC: "00:11:22:33:44:00", LogFormat: "text"}
	// The boot services' node view, faked for this unit test (bootsvc's
	// tests serve the real one): first down, later with a BMC lease.
	var leased atomic.Value // netip.Addr
	boot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := leased.Load().(netip.Addr)
		if !a.IsValid() || r.URL.Path != "/api/v1/nodes/00:11:22:33:44:10" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(api.Node{PrimaryMAC: "00:11:22:33:44:10", BMCMAC: "00:11:22:33:44:11", BMCIP: a})
	}))
	defer boot.Close()
	bf := &bmcFlags{driver: "ipmi", bootURL: boot.URL}
	bf.plan.subnet = "172.24.213.0/24"
	ctx := context.Background()
	_, p, err := env.MakePlan(&bf.plan, false)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := p.Find("00:11:22:33:44:10")

	for _, name := range []string{"00:11:22:33:44:10", "00-11-22-33-44-11", n.Hostname} {
		tg, err := env.resolveBMC(ctx, bf, name)
		if err != nil {
			t.Fatal(err)
		}
		if tg.url != "ipmi://"+n.BMCIP.String() || tg.opts.Node != "00:11:22:33:44:10" || tg.opts.Credentials.User != "admin" {
			t.Fatalf("resolve %q = %+v; want the planned BMC address %s", name, tg, n.BMCIP)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatal("resolving a node wrote state")
	}

	// The BMC's DHCP lease, as the boot services report it, wins over the plan.
	lease := netip.MustParseAddr("172.24.213.77")
	leased.Store(lease)
	tg, err := env.resolveBMC(ctx, bf, "00:11:22:33:44:10")
	if err != nil || tg.url != "ipmi://"+lease.String() {
		t.Fatalf("with a lease: %+v, %v; want ipmi://%s", tg, err, lease)
	}

	if _, err := env.resolveBMC(ctx, bf, "00:11:22:33:44:00"); err == nil || !strings.Contains(err.Error(), "--bmc") {
		t.Fatalf("management node: err = %v; want advice to use --bmc", err)
	}
	if _, err := env.resolveBMC(ctx, bf, "nosuchnode"); err == nil || !strings.Contains(err.Error(), "not in the rack") {
		t.Fatalf("unknown node: err = %v", err)
	}
	bf.driver = "libvirt"
	if tg, err := env.resolveBMC(ctx, bf, "00:11:22:33:44:20"); err != nil || tg.url != "libvirt:///" || tg.opts.PrimaryMAC != "00:11:22:33:44:20" {
		t.Fatalf("libvirt driver: %+v, %v", tg, err)
	}
}

func TestPowerBootdevDiagCommands(t *testing.T) {
	oem, state := exampleRack(t)
	addr, chassis, _ := startBMC(t, oem)
	bmcArgs := append([]string{"--bmc", "ipmi://" + addr}, rackFlags(oem, state)...)
	cmd := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, "", append(args, bmcArgs...)...)
		if code != 0 {
			t.Fatalf("racker %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		if strings.Contains(out+errs, "example-only-password") {
			t.Fatalf("racker %s printed the password", strings.Join(args, " "))
		}
		return out
	}
	if out := cmd("power", "status"); out != "off\n" {
		t.Fatalf("power status = %q", out)
	}
	cmd("power", "on")
	if on, _ := chassis.PowerState(context.Background()); !on {
		t.Fatal("the BMC's chassis is not on")
	}
	if out := cmd("power", "status"); out != "on\n" {
		t.Fatalf("power status = %q", out)
	}
	if out := cmd("bootdev", "pxe", "--efi", "--persistent"); out != "pxe persistent efi (verified)\n" {
		t.Fatalf("bootdev pxe = %q", out)
	}
	if out := cmd("bootdev"); out != "pxe persistent efi\n" {
		t.Fatalf("bootdev = %q", out)
	}
	out := cmd("ipmi", "diag")
	for _, want := range []string{"BMC address: " + addr, "power:       on", "boot flags:  pxe persistent efi", "SOL:         true", "IPMI 2.0 lanplus"} {
		if !strings.Contains(out, want) {
			t.Errorf("diag lacks %q:\n%s", want, out)
		}
	}
	code, _, errs := run(t, "", append([]string{"power", "dance"}, bmcArgs...)...)
	if code == 0 || !strings.Contains(errs, "want on, off, cycle, reset or status") {
		t.Fatalf("bad action: exit %d, %s", code, errs)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// waitFor polls cond; the deadline only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsoleRelaysBothWaysOverSOL(t *testing.T) {
	oem, state := exampleRack(t)
	addr, _, serial := startBMC(t, oem)
	args := append([]string{"console", "--bmc", "ipmi://" + addr}, rackFlags(oem, state)...)

	stdinR, stdinW := io.Pipe()
	var stdout, stderr lockedBuffer
	exit := make(chan int, 1)
	go func() { exit <- Main(context.Background(), args, stdinR, &stdout, &stderr) }()
	defer stdinW.Close()

	serial.FeedRX([]byte("Flatcar login: "))
	waitFor(t, "the node's output on racker's stdout", func() bool { return strings.Contains(stdout.String(), "Flatcar login: ") })
	io.WriteString(stdinW, "core\r")
	waitFor(t, "typed text on the node's serial port", func() bool { return strings.Contains(serial.TXString(), "core\r") })

	// A second console on the same BMC is refused, clearly.
	code, _, errs := run(t, "", args...)
	if code == 0 || !strings.Contains(errs, "already open") {
		t.Fatalf("second console: exit %d, %q", code, errs)
	}

	io.WriteString(stdinW, "~.")
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("console exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("~. did not end the console")
	}
	if strings.Contains(serial.TXString(), "~") {
		t.Fatalf("the escape reached the node: %q", serial.TXString())
	}
}

func TestEscapeReader(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"abc", "abc"},
		{"a~.b", "a~.b"},       // not at a line start
		{"ab\r~~x", "ab\r~x"},  // ~~ sends one ~
		{"ab\n~xy", "ab\n~xy"}, // ~ then anything else is sent as typed
		{"ab\r~.more", "ab\r"}, // ~. ends
		{"~.", ""},             // at the very start
	} {
		var out bytes.Buffer
		_, err := io.Copy(&out, &escapeReader{r: strings.NewReader(c.in), atLineStart: true})
		if err != nil && !errors.Is(err, errEscape) {
			t.Fatal(err)
		}
		if out.String() != c.want {
			t.Errorf("%q → %q, want %q", c.in, out.String(), c.want)
		}
	}
}
