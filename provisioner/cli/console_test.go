package cli

// racker console against the simulator's virtual BMC (simulator/vbmc, run
// in-process on loopback; only the tests import the simulator), with the
// node's serial port a unix socket the test serves the way QEMU serves a
// VM's, and a stale SOL session left by a client that went away.

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/racker/racker/simulator/vbmc"
)

// offMachine is the machine behind the test vBMC: always off, never
// started (the console does not need it to run).
type offMachine struct{}

func (offMachine) PoweredOn(context.Context) (bool, error)      { return false, nil }
func (offMachine) Start(context.Context, vbmc.BootDevice) error { return nil }
func (offMachine) Stop(context.Context) error                   { return nil }
func (offMachine) Shutdown(context.Context) error               { return nil }
func (offMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	ch := make(chan vbmc.GuestEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

// serialPort is the node's serial port: what the node prints is written to
// whoever is attached, what is typed arrives on typed.
type serialPort struct {
	path  string
	typed *lockedBuffer
	mu    sync.Mutex
	conn  net.Conn
}

func (s *serialPort) print(t *testing.T, text string) {
	t.Helper()
	waitFor(t, "a SOL session attached to the serial port", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conn != nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.conn, text)
}

// startConsoleVBMC runs a vBMC with SOL on a serial port of the test's and
// returns its IPMI address, the port, and the vBMC's log.
func startConsoleVBMC(t *testing.T, oem string) (addr string, port *serialPort, log *lockedBuffer) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(oem, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(string(b), "\n")
	}
	port = &serialPort{path: filepath.Join(t.TempDir(), "serial.sock"), typed: &lockedBuffer{}}
	ln, err := net.Listen("unix", port.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		// Like QEMU's serial chardev: one client at a time.
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			port.mu.Lock()
			port.conn = c
			port.mu.Unlock()
			r := bufio.NewReader(c)
			for {
				b, err := r.ReadByte()
				if err != nil {
					break
				}
				port.typed.Write([]byte{b})
			}
			port.mu.Lock()
			port.conn = nil
			port.mu.Unlock()
			c.Close()
		}
	}()
	log = &lockedBuffer{}
	listening := make(chan netip.AddrPort, 1)
	cfg := vbmc.Config{Name: "console-test", Machine: offMachine{}, ConsoleSocket: port.path,
		Static: netip.MustParsePrefix("127.0.0.1/8"), Port: -1, User: read("ipmi_user"), Password: read("ipmi_password"),
		Logger: slog.New(slog.NewTextHandler(log, nil)), OnListen: func(a netip.AddrPort) { listening <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() { done <- vbmc.Run(ctx, cfg); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	select {
	case a := <-listening:
		return a.String(), port, log
	case err := <-done:
		t.Fatalf("the vBMC stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the vBMC never listened")
	}
	return "", nil, nil
}

// staleSOL activates the SOL payload from a session that is then left
// alone, as a console client killed with -9 leaves it.
func staleSOL(t *testing.T, addr, oem string) {
	t.Helper()
	host, p, _ := net.SplitHostPort(addr)
	port := 0
	for _, c := range p {
		port = port*10 + int(c-'0')
	}
	user, _ := os.ReadFile(filepath.Join(oem, "ipmi_user"))
	pass, _ := os.ReadFile(filepath.Join(oem, "ipmi_password"))
	cl, err := client.NewClient(host, port, strings.TrimSpace(string(user)), strings.TrimSpace(string(pass)))
	if err != nil {
		t.Fatal(err)
	}
	cl.WithInterface(client.InterfaceLanplus).WithTimeout(2 * time.Second).WithCipherSuiteID(types.CipherSuiteID17)
	cl.WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	ctx := context.Background()
	if err := cl.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ActivatePayload(ctx, &transport.ActivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		cl.Close(dead) // the socket only: the session was abandoned
	})
}

// A console left active by a client that died: racker console says so and
// names --force; --force ends it and attaches; ~? lists the escapes, ~B
// sends a BREAK (the vBMC logs it: a VM's console socket cannot carry one),
// ~. leaves, and none of the escapes reach the node.
func TestConsoleForceHelpAndBreakAgainstAStaleSession(t *testing.T) {
	oem, state := exampleRack(t)
	// IPMI 2.0 passwords have 20 bytes at most; the vBMC is as strict.
	if err := os.WriteFile(filepath.Join(oem, "ipmi_password"), []byte("console-test-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, port, vlog := startConsoleVBMC(t, oem)
	staleSOL(t, addr, oem)
	args := append([]string{"console", "--bmc", "ipmi://" + addr}, rackFlags(oem, state)...)

	code, _, errs := run(t, "", args...)
	if code == 0 || !strings.Contains(errs, "already open") || !strings.Contains(errs, "--force") {
		t.Fatalf("console over a stale session: exit %d, want an error naming --force:\n%s", code, errs)
	}

	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var stdout, stderr lockedBuffer
	exit := make(chan int, 1)
	go func() { exit <- Main(context.Background(), append(args, "--force"), stdinR, &stdout, &stderr) }()
	waitFor(t, "the console attached", func() bool { return strings.Contains(stderr.String(), "[connected") })
	if !strings.Contains(stderr.String(), "ended the console that was active") {
		t.Errorf("--force did not say it ended the stale console:\n%s", stderr.String())
	}
	port.print(t, "Flatcar login: ")
	waitFor(t, "the node's output", func() bool { return strings.Contains(stdout.String(), "Flatcar login: ") })

	io.WriteString(stdinW, "~?")
	waitFor(t, "the escapes' help", func() bool { return strings.Contains(stderr.String(), "~B  send a serial BREAK") })
	io.WriteString(stdinW, "~B")
	waitFor(t, "the BREAK sent", func() bool { return strings.Contains(stderr.String(), "[BREAK sent]") })
	waitFor(t, "the vBMC's log of the BREAK", func() bool { return strings.Contains(vlog.String(), "serial BREAK requested") })
	io.WriteString(stdinW, "core\r")
	waitFor(t, "typed text on the serial port", func() bool { return strings.Contains(port.typed.String(), "core\r") })
	io.WriteString(stdinW, "~.")
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("console exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("~. did not end the console")
	}
	if strings.Contains(port.typed.String(), "~") {
		t.Fatalf("an escape reached the node: %q", port.typed.String())
	}
	// The console is free again: a plain attach works.
	stdin2R, stdin2W := io.Pipe()
	var out2, err2 lockedBuffer
	exit2 := make(chan int, 1)
	go func() { exit2 <- Main(context.Background(), args, stdin2R, &out2, &err2) }()
	waitFor(t, "a second console after the first left", func() bool { return strings.Contains(err2.String(), "[connected") })
	io.WriteString(stdin2W, "\r~.")
	if code := <-exit2; code != 0 {
		t.Fatalf("second console exit %d: %s", code, err2.String())
	}
}
