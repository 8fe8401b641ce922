package vbmc

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
)

const (
	testUser     = "admin"
	testPassword = "s3cret-Pass"
)

// testLogger sends the BMC's log to the test's log, and drops lines that
// come after the test ended.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() { w.mu.Lock(); w.done = true; w.mu.Unlock() }

// bmcUnderTest is a virtual BMC run by Run in the test, driven with the real
// ipmitool over loopback.
type bmcUnderTest struct {
	addr     netip.AddrPort
	redfish  netip.AddrPort // valid when the BMC serves Redfish
	passFile string
	dir      string
	// netns, when set, runs ipmitool inside that network namespace.
	netns string
}

// writeCredentials writes the user and password files (0600) the way the
// simulator hands them over.
func writeCredentials(t *testing.T, dir string) (userFile, passFile string) {
	userFile, passFile = filepath.Join(dir, "ipmi_user"), filepath.Join(dir, "ipmi_password")
	if err := os.WriteFile(userFile, []byte(testUser+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passFile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return userFile, passFile
}

// startBMC runs a virtual BMC on 127.0.0.1 (a port the kernel picks) over
// cfg's machine; it stops when the test ends.
func startBMC(t *testing.T, cfg Config) *bmcUnderTest {
	t.Helper()
	dir := t.TempDir()
	userFile, passFile := writeCredentials(t, dir)
	cfg.UserFile, cfg.PasswordFile = userFile, passFile
	if !cfg.Static.IsValid() && cfg.Interface == "" {
		cfg.Static = netip.MustParsePrefix("127.0.0.1/8")
		cfg.Port = -1
		cfg.RedfishPort = -1
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Name == "" {
		cfg.Name = "test-node"
	}
	addrs := make(chan netip.AddrPort, 4)
	rfAddrs := make(chan netip.AddrPort, 4)
	cfg.OnListen = func(a netip.AddrPort) { addrs <- a }
	cfg.OnRedfishListen = func(a netip.AddrPort) { rfAddrs <- a }
	ipmi := len(cfg.Protocols) == 0 || slices.Contains(cfg.Protocols, ProtocolIPMI)
	redfish := slices.Contains(cfg.Protocols, ProtocolRedfish)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	b := &bmcUnderTest{passFile: passFile, dir: dir}
	wait := func(ch chan netip.AddrPort) netip.AddrPort {
		select {
		case a := <-ch:
			return a
		case err := <-done:
			t.Fatalf("Run ended before listening: %v", err)
		case <-time.After(2 * time.Minute):
			t.Fatal("the virtual BMC never listened")
		}
		return netip.AddrPort{}
	}
	if ipmi {
		b.addr = wait(addrs)
	}
	if redfish {
		b.redfish = wait(rfAddrs)
	}
	return b
}

// ipmitoolArgs are the connection arguments: lanplus, the password from a
// file (never on the command line).
func (b *bmcUnderTest) ipmitoolArgs(extra ...string) []string {
	args := []string{"-I", "lanplus", "-H", b.addr.Addr().String(), "-p", strconv.Itoa(int(b.addr.Port())),
		"-U", testUser, "-f", b.passFile, "-N", "1", "-R", "3"}
	return append(args, extra...)
}

// ipmitool runs the real ipmitool against the BMC.
func (b *bmcUnderTest) ipmitool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ipmitool := testenv.RequireCommand(t, "ipmitool")
	cmd := exec.Command(ipmitool, b.ipmitoolArgs(args...)...)
	if b.netns != "" {
		cmd = netenv.Command(context.Background(), b.netns, ipmitool, b.ipmitoolArgs(args...)...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (b *bmcUnderTest) mustIPMI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.ipmitool(t, args...)
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// bootParam5 reads boot flags with `chassis bootparam get 5` and returns
// the raw data ipmitool prints.
func (b *bmcUnderTest) bootParam5(t *testing.T) string {
	t.Helper()
	out := b.mustIPMI(t, "chassis", "bootparam", "get", "5")
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Boot parameter data:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no boot parameter data in:\n%s", out)
	return ""
}

func (b *bmcUnderTest) powerStatus(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(b.mustIPMI(t, "power", "status"))
}

// eventually polls cond until it holds; the bound only guards against a
// hang, it asserts nothing about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func devices(ds []BootDevice) string { return fmt.Sprint(ds) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runIPMITool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testenv.RequireCommand(t, "ipmitool"), args...).CombinedOutput()
	return string(out), err
}
