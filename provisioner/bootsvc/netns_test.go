package bootsvc_test

// The integration tests run the real `racker serve` (this test binary,
// re-executed as racker) inside a network namespace, and real clients
// (busybox udhcpc, tftp, wget; QEMU) in another, joined by a bridge of
// their own: netenv builds that network for each test and tears it down.
// Traffic never leaves it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cli"
)

// asRacker makes this test binary act as the racker command when re-executed.
const asRacker = "RACKER_BOOTSVC_TEST_AS_RACKER"

// sendUDP makes it send its stdin as one UDP datagram to the address in
// the variable (used to throw malformed packets at the server).
const sendUDP = "RACKER_BOOTSVC_TEST_SEND_UDP"

func TestMain(m *testing.M) {
	if os.Getenv(asRacker) == "1" {
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if to := os.Getenv(sendUDP); to != "" {
		os.Exit(sendDatagram(to))
	}
	os.Exit(m.Run())
}

func sendDatagram(to string) int {
	b, _ := io.ReadAll(os.Stdin)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fd, _ := c.SyscallConn()
	fd.Control(func(s uintptr) { syscall.SetsockoptInt(int(s), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
	addr, err := net.ResolveUDPAddr("udp4", to)
	if err == nil {
		_, err = c.WriteTo(b, addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// suffix is a short random name part: interface names stay ≤ 15 characters.
func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// inNS runs a command inside network namespace ns and returns its output;
// a failure fails the test.
func inNS(t *testing.T, ns string, name string, args ...string) string {
	t.Helper()
	out, err := netenv.Command(context.Background(), ns, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNet is a server namespace and a client namespace, each with one end
// of a veth whose other end is on a bridge of their own, with no address:
// an isolated link between srvIf (MAC srvMAC, left down: racker serve
// brings it up) and cliIf. netenv builds it and tears it down.
type testNet struct {
	srvNS, cliNS string
	srvIf, cliIf string
	srvMAC       string
	bridge       string
}

func newTestNet(t *testing.T) *testNet {
	n, _ := newTestNets(t, false)
	return n
}

// newTestNets builds the PXE link and, with public, a second link from the
// server namespace (192.168.77.1/24 on its side) to another client: the
// management node's public side.
func newTestNets(t *testing.T, public bool) (pxe, pub *testNet) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip") // netenv.Command runs `ip netns exec`
	s := suffix()
	pxe = &testNet{srvNS: "rkt-s-" + s, cliNS: "rkt-c-" + s, srvIf: "rks" + s, cliIf: "rkc" + s, srvMAC: "02:bb:00:00:01:01", bridge: "rkb" + s}
	mac, _ := net.ParseMAC(pxe.srvMAC)
	top := netenv.Topology{
		Bridges:    []netenv.Bridge{{Name: pxe.bridge}},
		Namespaces: []string{pxe.srvNS, pxe.cliNS},
		Veths: []netenv.Veth{
			{Host: "rkhs" + s, Bridge: pxe.bridge, Peer: pxe.srvIf, Namespace: pxe.srvNS, MAC: mac, Down: true},
			{Host: "rkhc" + s, Bridge: pxe.bridge, Peer: pxe.cliIf, Namespace: pxe.cliNS},
		},
	}
	if public {
		pub = &testNet{srvNS: pxe.srvNS, cliNS: "rkt-p-" + s, srvIf: "rkr" + s, cliIf: "rkq" + s, bridge: "rkd" + s}
		top.Bridges = append(top.Bridges, netenv.Bridge{Name: pub.bridge})
		top.Namespaces = append(top.Namespaces, pub.cliNS)
		top.Veths = append(top.Veths,
			netenv.Veth{Host: "rkhr" + s, Bridge: pub.bridge, Peer: pub.srvIf, Namespace: pxe.srvNS,
				Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.1/24")}},
			netenv.Veth{Host: "rkhq" + s, Bridge: pub.bridge, Peer: pub.cliIf, Namespace: pub.cliNS})
	}
	netenv.ForTest(t, top)
	return pxe, pub
}

// client changes the client's interface inside its namespace.
func (n *testNet) client(t *testing.T, change func(l netlink.Link) error) {
	t.Helper()
	err := netenv.Do(n.cliNS, func() error {
		l, err := netlink.LinkByName(n.cliIf)
		if err != nil {
			return err
		}
		return change(l)
	})
	if err != nil {
		t.Fatalf("changing %s in %s: %v", n.cliIf, n.cliNS, err)
	}
}

// setClientMAC gives the client interface mac, as if another machine were
// plugged in: down, no addresses, the new MAC, up.
func (n *testNet) setClientMAC(t *testing.T, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	n.clearClientAddrs(t)
	n.client(t, func(l netlink.Link) error {
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
}

// addClientAddr puts an address on the client interface.
func (n *testNet) addClientAddr(t *testing.T, prefix string) {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	n.client(t, func(l netlink.Link) error {
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}})
	})
}

// clearClientAddrs takes the client interface's IPv4 addresses away.
func (n *testNet) clearClientAddrs(t *testing.T) {
	t.Helper()
	n.client(t, func(l netlink.Link) error {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := netlink.AddrDel(l, &a); err != nil {
				return err
			}
		}
		return nil
	})
}

// rack is an OEM folder and a state folder for a management node whose
// secondary NIC is the server interface, plus nodes.
type rack struct {
	oem, state string
	nodes      []rackNode
}

type rackNode struct{ primary, bmc, secondary, typ string }

func newRack(t *testing.T, n *testNet, nodes ...rackNode) *rack {
	t.Helper()
	dir := t.TempDir()
	r := &rack{oem: filepath.Join(dir, "oem"), state: filepath.Join(dir, "state"), nodes: nodes}
	os.MkdirAll(r.oem, 0o755)
	var b strings.Builder
	b.WriteString("Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\n")
	fmt.Fprintf(&b, "02:bb:00:00:00:01, 02:bb:00:00:00:02, %s, mgmt, management node\n", n.srvMAC)
	for _, x := range nodes {
		fmt.Fprintf(&b, "%s, %s, %s, %s, test node\n", x.primary, x.bmc, x.secondary, x.typ)
	}
	os.WriteFile(filepath.Join(r.oem, "nodes.csv"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(r.oem, "ipmi_user"), []byte("admin\n"), 0o600)
	os.WriteFile(filepath.Join(r.oem, "ipmi_password"), []byte("secret\n"), 0o600)
	return r
}

// server is a running `racker serve` in the server namespace.
type server struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// serve starts racker serve in n's server namespace and waits until it
// reports its sockets open.
func serve(t *testing.T, n *testNet, r *rack, extra ...string) *server {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--oem-dir", r.oem, "--state-dir", r.state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--install-dir", filepath.Dir(r.state), "--tftp-root", "/usr/lib/ipxe"}, extra...)
	cmd := netenv.Command(context.Background(), n.srvNS, self, args...)
	cmd.Env = append(os.Environ(), asRacker+"=1")
	logPath := filepath.Join(t.TempDir(), "serve.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := &server{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "boot services running") {
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("racker serve exited before serving (%v):\n%s", err, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for a graceful exit; it returns the log.
func (s *server) stop(t *testing.T) string {
	t.Helper()
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			s.done <- err
			if err != nil {
				b, _ := os.ReadFile(s.log)
				t.Errorf("racker serve did not stop cleanly on SIGTERM: %v\n%s", err, b)
			}
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			t.Errorf("racker serve ignored SIGTERM for 30 s")
			<-s.done
		}
	}
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// udhcpc runs busybox udhcpc once in the client namespace and returns the
// variables its script saw on "bound" (empty when no lease was given).
func udhcpc(t *testing.T, n *testNet, opts ...string) map[string]string {
	t.Helper()
	bb := testenv.RequireCommand(t, "busybox")
	dir := t.TempDir()
	out := filepath.Join(dir, "bound")
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+out+"\nexit 0\n"), 0o755)
	args := append([]string{"udhcpc", "-i", n.cliIf, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script}, opts...)
	cmd := netenv.Command(context.Background(), n.cliNS, bb, args...)
	log, _ := cmd.CombinedOutput() // exit 1 when no lease: the caller decides
	vars := map[string]string{}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Logf("udhcpc got no lease:\n%s", log)
		return vars
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// events reads the event journal of the state folder.
func events(t *testing.T, state string) []api.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "events.jsonl"))
	if err != nil {
		t.Fatalf("reading the event journal: %v", err)
	}
	var out []api.Event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e api.Event
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []api.Event, mac string, kind api.EventKind, msgPart string) bool {
	for _, e := range evs {
		if e.MAC == mac && e.Kind == kind && strings.Contains(e.Message, msgPart) {
			return true
		}
	}
	return false
}
