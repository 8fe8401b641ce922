package bootsvc_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

var node1 = rackNode{primary: "02:bb:00:00:10:01", bmc: "02:bb:00:00:10:02", secondary: "02:bb:00:00:10:03", typ: "worker"}

// TestUdhcpcGetsPlannedAddresses: a node's NIC and its BMC each get their
// planned address from racker serve, the node with the boot file its
// firmware needs, the BMC without; the leases are durable and visible to
// other processes and to the HTTP API.
func TestUdhcpcGetsPlannedAddresses(t *testing.T) {
	n := newTestNet(t)
	r := newRack(t, n, node1)
	s := serve(t, n, r)

	n.setClientMAC(t, node1.primary)
	v := udhcpc(t, n, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if v["ip"] != "172.24.213.2" || v["mask"] != "24" || v["serverid"] != "172.24.213.1" {
		t.Fatalf("node lease: ip=%q mask=%q serverid=%q, want 172.24.213.2/24 from 172.24.213.1", v["ip"], v["mask"], v["serverid"])
	}
	if v["boot_file"] != "undionly.kpxe" || v["siaddr"] != "172.24.213.1" || v["hostname"] == "" {
		t.Errorf("node PXE answer: boot_file=%q siaddr=%q hostname=%q", v["boot_file"], v["siaddr"], v["hostname"])
	}
	// The same NIC, now as iPXE (user class "iPXE", sent raw as iPXE does).
	v = udhcpc(t, n, "-x", "0x4d:69505845")
	if v["boot_file"] != "http://172.24.213.1:8080/boot.ipxe" {
		t.Errorf("iPXE boot file = %q", v["boot_file"])
	}

	n.setClientMAC(t, node1.bmc)
	v = udhcpc(t, n)
	if v["ip"] != "172.24.213.3" || v["boot_file"] != "" {
		t.Fatalf("BMC lease: ip=%q boot_file=%q, want 172.24.213.3 and no boot file", v["ip"], v["boot_file"])
	}
	for mac, want := range map[string]string{node1.primary: "172.24.213.2", node1.bmc: "172.24.213.3"} {
		ip, ok, err := leases.Lookup(r.state, mac)
		if err != nil || !ok || ip != netip.MustParseAddr(want) {
			t.Errorf("leases.Lookup(%s) = %v %v %v, want %s", mac, ip, ok, err, want)
		}
	}
	// The management views report the BMC's lease, on the management
	// node's loopback; a machine on the internal network is refused them.
	out := inNS(t, n.srvNS, "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/api/v1/nodes")
	if !strings.Contains(out, `"bmc_ip":"172.24.213.3"`) {
		t.Errorf("GET /api/v1/nodes does not show the BMC lease:\n%s", out)
	}
	n.addClientAddr(t, "172.24.213.3/24")
	if out, err := netenv.Command(context.Background(), n.cliNS, "busybox", "wget", "-q", "-O", "-",
		"http://172.24.213.1:8080/api/v1/nodes").CombinedOutput(); err == nil || strings.Contains(string(out), node1.primary) {
		t.Errorf("a node read GET /api/v1/nodes (%v):\n%s", err, out)
	}
	log := s.stop(t)
	if !strings.Contains(log, "boot services stopped") {
		t.Errorf("no graceful stop in the log:\n%s", log)
	}
	evs := events(t, r.state)
	if !hasEvent(evs, node1.primary, api.KindDHCP, "ip=172.24.213.2") || !hasEvent(evs, node1.bmc, api.KindDHCP, "ip=172.24.213.3") {
		t.Errorf("missing dhcp events: %+v", evs)
	}
}

// TestUnknownMACGetsNothingButIsSeen: without a pool, a MAC that is not in
// nodes.csv gets no address, and a machine_seen event records it. A
// malformed packet before it does not stop the server.
func TestUnknownMACGetsNothingButIsSeen(t *testing.T) {
	n := newTestNet(t)
	r := newRack(t, n, node1)
	s := serve(t, n, r)
	garbage(t, n, []byte("this is not DHCP"))
	n.setClientMAC(t, "02:cc:00:00:00:99")
	if v := udhcpc(t, n, "-V", "PXEClient:Arch:00000:UNDI:002001"); len(v) != 0 {
		t.Fatalf("an unknown MAC got a lease: %v", v)
	}
	// Still serving after the garbage: the planned node gets its address.
	n.setClientMAC(t, node1.primary)
	if v := udhcpc(t, n); v["ip"] != "172.24.213.2" {
		t.Fatalf("after a malformed packet the node got %q", v["ip"])
	}
	if !hasEvent(events(t, r.state), "02:cc:00:00:00:99", api.KindMachineSeen, "PXEClient") {
		t.Errorf("no machine_seen event for the unknown MAC: %+v", events(t, r.state))
	}
	if _, ok, _ := leases.Lookup(r.state, "02:cc:00:00:00:99"); ok {
		t.Error("the unknown MAC has a lease")
	}
	if log := s.stop(t); !strings.Contains(log, "malformed") {
		t.Errorf("the malformed packet was not logged:\n%s", log)
	}
}

// TestDynamicPoolLeaseSurvivesRestart: with --dynamic-pool an unknown MAC
// gets an address from the upper half of the subnet, and after a restart of
// the server (graceful, or a crash: SIGKILL right after the ACK) it gets
// the same one back while another MAC does not. An ACK leaves only once its
// lease is on disk, so a crash loses no lease a client holds.
func TestDynamicPoolLeaseSurvivesRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "SIGTERM", true: "SIGKILL"}[crash]
		t.Run(name, func(t *testing.T) {
			n := newTestNet(t)
			r := newRack(t, n, node1)
			s := serve(t, n, r, "--dynamic-pool")
			n.setClientMAC(t, "02:cc:00:00:00:01")
			first := udhcpc(t, n)["ip"]
			ip, err := netip.ParseAddr(first)
			if err != nil || ip.Compare(netip.MustParseAddr("172.24.213.128")) < 0 {
				t.Fatalf("pool lease %q, want an address in 172.24.213.128-254", first)
			}
			if crash {
				s.cmd.Process.Kill()
				<-s.done
			} else {
				s.stop(t)
			}

			serve(t, n, r, "--dynamic-pool")
			n.setClientMAC(t, "02:cc:00:00:00:02")
			if other := udhcpc(t, n)["ip"]; other == "" || other == first {
				t.Fatalf("another MAC got %q (the first holds %s)", other, first)
			}
			n.setClientMAC(t, "02:cc:00:00:00:01")
			if again := udhcpc(t, n)["ip"]; again != first {
				t.Fatalf("after a restart the same MAC got %q, it held %q", again, first)
			}
			if got, ok, _ := leases.Lookup(r.state, "02:cc:00:00:00:01"); !ok || got != ip {
				t.Errorf("leases.Lookup = %v %v, want %s", got, ok, ip)
			}
		})
	}
}

// TestTFTPServesIPXEBinaries: busybox tftp fetches undionly.kpxe byte for
// byte (with blksize negotiation); a path outside the folder is refused.
func TestTFTPServesIPXEBinaries(t *testing.T) {
	want, err := os.ReadFile(testenv.RequireFile(t, "/usr/lib/ipxe/undionly.kpxe"))
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNet(t)
	r := newRack(t, n, node1)
	serve(t, n, r)
	n.addClientAddr(t, "172.24.213.2/24")
	dst := filepath.Join(t.TempDir(), "undionly.kpxe")
	for _, blk := range []string{"512", "1432"} {
		os.Remove(dst)
		inNS(t, n.cliNS, "busybox", "tftp", "-g", "-b", blk, "-r", "undionly.kpxe", "-l", dst, "172.24.213.1")
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blksize %s: got %d bytes, want the %d of /usr/lib/ipxe/undionly.kpxe (%v)", blk, len(got), len(want), err)
		}
	}
	bad := filepath.Join(t.TempDir(), "passwd")
	out, err := netenv.Command(context.Background(), n.cliNS, "busybox", "tftp", "-g", "-r", "../../../etc/passwd", "-l", bad, "172.24.213.1").CombinedOutput()
	if err == nil {
		t.Fatalf("path traversal served: %s", out)
	}
	if !hasEvent(events(t, r.state), node1.primary, api.KindTFTP, "undionly.kpxe") {
		t.Errorf("no tftp event naming the node: %+v", events(t, r.state))
	}
}

// garbage sends b as a UDP datagram to the server's DHCP port from the
// client namespace (this test binary, re-executed there).
func garbage(t *testing.T, n *testNet, b []byte) {
	t.Helper()
	n.addClientAddr(t, "172.24.213.250/24")
	defer n.clearClientAddrs(t)
	self, _ := os.Executable()
	cmd := netenv.Command(context.Background(), n.cliNS, self)
	cmd.Env = append(os.Environ(), sendUDP+"=172.24.213.1:67")
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sending garbage: %v\n%s", err, out)
	}
}

// TestAnswersOnlyOnThePXEInterface: the server namespace has a second
// link (the "public" side); a planned node's MAC asking there gets nothing,
// while on the PXE link it gets its address.
func TestAnswersOnlyOnThePXEInterface(t *testing.T) {
	n, pub := newTestNets(t, true)

	r := newRack(t, n, node1)
	serve(t, n, r)
	pub.setClientMAC(t, node1.primary)
	if v := udhcpc(t, pub, "-V", "PXEClient:Arch:00000:UNDI:002001"); len(v) != 0 {
		t.Fatalf("answered on the public link: %v", v)
	}
	n.setClientMAC(t, node1.primary)
	if v := udhcpc(t, n); v["ip"] != "172.24.213.2" {
		t.Fatalf("on the PXE link the node got %q", v["ip"])
	}
}

// TestIgnitionOnlyToItsNode: through the whole stack, a node that got its
// address by DHCP fetches its own install Ignition, and is refused (403, a
// forbidden event) another node's.
func TestIgnitionOnlyToItsNode(t *testing.T) {
	node2 := rackNode{primary: "02:bb:00:00:20:01", bmc: "02:bb:00:00:20:02", secondary: "02:bb:00:00:20:03", typ: "worker"}
	n := newTestNet(t)
	r := newRack(t, n, node1, node2)
	// An install config names an OS release; a signed stand-in folder will do.
	serve(t, n, r, "--os", "testos", "--testos-dir", signedRelease(t))
	// Racker opens both nodes' boot windows (as bootstrap does before it
	// powers them on), on the management node's loopback.
	for _, mac := range []string{node1.primary, node2.primary} {
		inNS(t, n.srvNS, "busybox", "wget", "-q", "-O", "-", "--post-data", "", "http://127.0.0.1:8080/api/v1/nodes/"+mac+"/netboot")
	}
	n.setClientMAC(t, node1.primary)
	v := udhcpc(t, n)
	if v["ip"] == "" {
		t.Fatal("node 1 got no lease")
	}
	n.addClientAddr(t, v["ip"]+"/24")
	get := func(mac string) (string, error) {
		out, err := netenv.Command(context.Background(), n.cliNS, "busybox", "wget", "-q", "-O", "-",
			"http://172.24.213.1:8080/ignition?mac="+mac+"&phase=install").CombinedOutput()
		return string(out), err
	}
	if out, err := get(node1.primary); err != nil || !strings.Contains(out, `"version":"3.4.0"`) {
		t.Fatalf("node 1's own Ignition: %v\n%s", err, out)
	}
	if out, err := get(node2.primary); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("node 1 got node 2's Ignition (%v):\n%s", err, out)
	}
	// Served once per install generation: a second fetch, even from the
	// node's own address, is refused.
	if out, err := get(node1.primary); err == nil || strings.Contains(out, `"version":"3.4.0"`) {
		t.Fatalf("node 1's install config was served twice (%v):\n%s", err, out)
	}
	if !hasEvent(events(t, r.state), node2.primary, api.KindForbidden, v["ip"]) {
		t.Errorf("no forbidden event naming the requester: %s", summarize(events(t, r.state)))
	}
}

// signedRelease makes a test OS release folder racker serve accepts (files
// with placeholder contents, signed like scripts/build-testos.sh signs them,
// with a throwaway key) and returns the folder holding current/.
func signedRelease(t *testing.T) string {
	t.Helper()
	rel := t.TempDir()
	cur := filepath.Join(rel, "current")
	os.Mkdir(cur, 0o755)
	for _, f := range []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz", "flatcar_production_image.bin.bz2"} {
		os.WriteFile(filepath.Join(cur, f), []byte("stand-in"), 0o644)
	}
	os.WriteFile(filepath.Join(cur, "version.txt"), []byte("FLATCAR_VERSION=testos-1\n"), 0o644)
	e, err := openpgp.NewEntity("test release", "", "t@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	os.WriteFile(filepath.Join(cur, "image-signing-key.asc"), pub.Bytes(), 0o644)
	for _, f := range []string{"flatcar_production_image.bin.bz2", "version.txt"} {
		b, _ := os.ReadFile(filepath.Join(cur, f))
		var sig bytes.Buffer
		if err := openpgp.DetachSign(&sig, e, bytes.NewReader(b), nil); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(cur, f+".sig"), sig.Bytes(), 0o644)
	}
	return rel
}

// TestSIGHUPReloadsNodes: a node added to nodes.csv gets its address after
// a SIGHUP, without a restart, and the node served before keeps its own.
func TestSIGHUPReloadsNodes(t *testing.T) {
	node2 := rackNode{primary: "02:bb:00:00:20:01", bmc: "02:bb:00:00:20:02", secondary: "02:bb:00:00:20:03", typ: "worker"}
	n := newTestNet(t)
	r := newRack(t, n, node1)
	s := serve(t, n, r)
	n.setClientMAC(t, node2.primary)
	if v := udhcpc(t, n); len(v) != 0 {
		t.Fatalf("a node not yet in nodes.csv got %v", v)
	}
	f, err := os.OpenFile(filepath.Join(r.oem, "nodes.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(node2.primary + ", " + node2.bmc + ", " + node2.secondary + ", worker, added later\n")
	f.Close()
	s.cmd.Process.Signal(syscall.SIGHUP)
	for !strings.Contains(readFile(s.log), "plan reloaded") {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("racker serve exited on SIGHUP (%v):\n%s", err, readFile(s.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if v := udhcpc(t, n); v["ip"] != "172.24.213.4" {
		t.Fatalf("the added node got %q, want the next free address 172.24.213.4", v["ip"])
	}
	n.setClientMAC(t, node1.primary)
	if v := udhcpc(t, n); v["ip"] != "172.24.213.2" {
		t.Fatalf("the first node got %q after the reload", v["ip"])
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestHTTPOnlyOnThePXEInterface: the weak host model would let a machine on
// the public side reach the internal address through the management
// node's public interface (a route to 172.24.213.0/24 via it is all it
// takes). The nodes' HTTP socket is bound to the PXE interface, so such a
// connection is refused; the PXE side and the management node's loopback
// are served.
func TestHTTPOnlyOnThePXEInterface(t *testing.T) {
	n, pub := newTestNets(t, true)
	r := newRack(t, n, node1)
	serve(t, n, r)
	pub.addClientAddr(t, "192.168.77.2/24")
	inNS(t, pub.cliNS, "ip", "route", "add", "172.24.213.0/24", "via", "192.168.77.1")
	for _, path := range []string{"/healthz", "/boot.ipxe", "/api/v1/nodes", "/metrics"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := netenv.Command(ctx, pub.cliNS, "busybox", "wget", "-q", "-O", "-", "http://172.24.213.1:8080"+path).CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("GET %s from the public side answered:\n%s", path, out)
		}
	}
	n.addClientAddr(t, "172.24.213.200/24")
	if out := inNS(t, n.cliNS, "busybox", "wget", "-q", "-O", "-", "http://172.24.213.1:8080/healthz"); !strings.Contains(out, "ok") {
		t.Errorf("healthz on the PXE side: %q", out)
	}
	if out := inNS(t, n.srvNS, "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/api/v1/nodes"); !strings.Contains(out, node1.primary) {
		t.Errorf("management views on loopback: %q", out)
	}
}
