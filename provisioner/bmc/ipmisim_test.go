package bmc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// ipmiSim is OpenIPMI's ipmi_sim, an independent BMC implementation, on a
// loopback port with a generated config. Its chassis_control script keeps
// the power state in a file and records every request in a log, so the
// test sees what the BMC was asked to do to the "hardware".
type ipmiSim struct {
	addr string
	dir  string
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const chassisControlScript = `#!/bin/sh
# ipmi_sim chassis_control: $1 = MC address, then "get NAME..." or "set NAME VALUE...".
dir=$(dirname "$0")
mc=$1; op=$2; shift 2
echo "$op $*" >> "$dir/control.log"
case $op in
get)
	for name in "$@"; do
		case $name in
		power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
		boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		case $1 in
		power) echo "$2" > "$dir/power" ;;
		boot) echo "$2" > "$dir/boot" ;;
		esac
		shift 2
	done ;;
esac
`

func freeUDPPort(t testing.TB) int {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func startIPMISim(t testing.TB) *ipmiSim {
	t.Helper()
	bin := testenv.RequireCommand(t, "ipmi_sim")
	dir := t.TempDir()
	port := freeUDPPort(t)
	s := &ipmiSim{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, out: &syncBuffer{}}
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("chassis_control", chassisControlScript, 0o755)
	// The password is in a 0600 file, as on a real management node; never argv.
	write("lan.conf", fmt.Sprintf(`name "racker-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 md5
`, port, filepath.Join(dir, "chassis_control"), testUser, testPassword), 0o600)
	write("bmc.emu", "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	// ipmi_sim logs to syslog only, and there is none: without -n and with
	// stdin on a FIFO opened read-write (so it never sees EOF) its messages
	// come to stdout, where the test can show them.
	fifo := filepath.Join(dir, "stdin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	stdin, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "state"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, s.out, s.out
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		stdin.Close()
		t.Fatalf("start ipmi_sim: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		stdin.Close()
		if t.Failed() {
			t.Logf("ipmi_sim output:\n%s", s.out.String())
		}
	})
	// Ready when it answers a session; it exits at once on a config error.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := testOpts(t, nil)
	opts.TryTimeout = time.Second
	opts.Tries = 1
	c, err := Open(ctx, "ipmi://"+s.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.PowerState(ctx); err == nil {
			return s
		} else if ctx.Err() != nil {
			t.Fatalf("ipmi_sim never answered: %v\n%s", err, s.out.String())
		}
		select {
		case <-exited:
			t.Fatalf("ipmi_sim exited:\n%s", s.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *ipmiSim) file(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestIPMIAgainstOpenIPMISim(t *testing.T) {
	testenv.RequireCommand(t, "ipmi_sim")
	sim := startIPMISim(t)
	var logs bytes.Buffer
	c := openTest(t, "ipmi://"+sim.addr, testOpts(t, &logs))
	ctx := context.Background()

	if s, err := c.PowerState(ctx); err != nil || s != PowerOff {
		t.Fatalf("PowerState = %q, %v; want off", s, err)
	}
	if err := c.Power(ctx, ActionOn); err != nil {
		t.Fatal(err)
	}
	if got := sim.file(t, "power"); got != "1" {
		t.Fatalf("after power on, the chassis script holds power %q, want 1", got)
	}
	if s, err := c.PowerState(ctx); err != nil || s != PowerOn {
		t.Fatalf("PowerState = %q, %v; want on", s, err)
	}
	if err := c.Power(ctx, ActionOff); err != nil {
		t.Fatal(err)
	}
	if got := sim.file(t, "power"); got != "0" {
		t.Fatalf("after power off, power %q, want 0", got)
	}
	if err := c.Power(ctx, ActionCycle); err != nil { // from off: powers on
		t.Fatal(err)
	}
	if got := sim.file(t, "power"); got != "1" {
		t.Fatalf("after cycle from off, power %q, want 1", got)
	}

	// A cycle of a node that is on goes through off to on: ipmi_sim
	// switches off at once and on again from its own timer.
	before := len(strings.Split(sim.file(t, "control.log"), "\n"))
	if err := c.Power(ctx, ActionCycle); err != nil {
		t.Fatal(err)
	}
	var sets []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		sets = nil
		for _, l := range strings.Split(sim.file(t, "control.log"), "\n")[before:] {
			if strings.HasPrefix(l, "set power") {
				sets = append(sets, l)
			}
		}
		if len(sets) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Join(sets, ",") != "set power 0,set power 1" {
		t.Fatalf("power cycle reached the chassis as %q, want off then on", sets)
	}

	// Stock ipmi_sim hands the device to its chassis script but never
	// reports the flags back: unverified, with a warning, not an error.
	verified, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE, EFI: true})
	if err != nil || verified {
		t.Fatalf("SetBoot(pxe) = %v, %v; want unverified without error", verified, err)
	}
	if got := sim.file(t, "boot"); got != "pxe" {
		t.Fatalf("chassis script got boot %q, want pxe", got)
	}
	if n := strings.Count(sim.file(t, "control.log"), "set boot pxe"); n != 3 {
		t.Fatalf("the flags were written %d times, want a bounded 3", n)
	}
	if !strings.Contains(logs.String(), "unverified") {
		t.Fatalf("no warning for unverified flags:\n%s", logs.String())
	}
	if _, err := c.SetBoot(ctx, BootFlags{Device: DeviceDisk, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if got := sim.file(t, "boot"); got != "default" {
		t.Fatalf("chassis script got boot %q, want default (disk)", got)
	}
	d, err := c.Diag(ctx)
	if err != nil || d.Power != PowerOn || d.ManufacturerID != 0x1291 {
		t.Fatalf("Diag = %+v, %v", d, err)
	}
}

func TestIPMIWrongPasswordAgainstOpenIPMISim(t *testing.T) {
	testenv.RequireCommand(t, "ipmi_sim")
	sim := startIPMISim(t)
	opts := testOpts(t, nil)
	opts.Credentials.Password = "not-the-password"
	c := openTest(t, "ipmi://"+sim.addr, opts)
	_, err := c.PowerState(context.Background())
	if err == nil || !strings.Contains(err.Error(), "authentication failed") || strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("err = %v; want authentication failed, without the password", err)
	}
}
