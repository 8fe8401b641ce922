package netenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/internal/testenv"
)

// testTopology is two namespaces on an isolated bridge plus a NATed bridge
// with a host address; names carry the PID so parallel runs do not collide.
func testTopology(tag string) (Topology, Names) {
	return testTopologyFor(tag, os.Getpid())
}

func testTopologyFor(tag string, pid int) (Topology, Names) {
	n := Names{Instance: fmt.Sprintf("ne%s%d", tag, pid%100000)}
	return Topology{
		Bridges: []Bridge{
			{Name: n.Bridge("i")},
			{Name: n.Bridge("p"), Address: netip.MustParsePrefix("10.251.77.1/24")},
		},
		Namespaces: []string{n.Namespace("a"), n.Namespace("b")},
		Veths: []Veth{
			{Host: n.Iface("a", "i"), Bridge: n.Bridge("i"), Peer: "eth0", Namespace: n.Namespace("a"),
				MAC: MAC(n.Instance, 1, 1), Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.1/24")}},
			{Host: n.Iface("b", "i"), Bridge: n.Bridge("i"), Peer: "eth0", Namespace: n.Namespace("b"),
				MAC: MAC(n.Instance, 2, 1), Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.2/24")}},
			{Host: n.Iface("a", "p"), Bridge: n.Bridge("p"), Peer: "eth1", Namespace: n.Namespace("a"),
				Addresses: []netip.Prefix{netip.MustParsePrefix("10.251.77.2/24")}, Gateway: netip.MustParseAddr("10.251.77.1")},
		},
		NAT: []NAT{{Bridge: n.Bridge("p"), Subnet: netip.MustParsePrefix("10.251.77.0/24")}},
	}, n
}

func requireNetenv(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "iptables")
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "busybox")
}

// assertGone checks that no interface, namespace or NAT rule of the topology
// is left on the host.
func assertGone(t *testing.T, tp Topology, record string) {
	t.Helper()
	for _, b := range tp.Bridges {
		if _, err := netlink.LinkByName(b.Name); err == nil {
			t.Errorf("bridge %s left behind", b.Name)
		}
	}
	for _, v := range tp.Veths {
		if _, err := netlink.LinkByName(v.Host); err == nil {
			t.Errorf("veth %s left behind", v.Host)
		}
	}
	for _, ns := range tp.Namespaces {
		if _, err := os.Stat(NamespacePath(ns)); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	for _, b := range tp.Bridges {
		if strings.Contains(string(out), "netenv:"+b.Name) {
			t.Errorf("iptables rules of %s left behind", b.Name)
		}
	}
	if _, err := os.Stat(record); err == nil {
		t.Errorf("record %s left behind", record)
	}
}

func TestCreateBuildsAWorkingNetworkAndTeardownLeavesNothing(t *testing.T) {
	requireNetenv(t)
	tp, n := testTopology("c")
	rec := filepath.Join(t.TempDir(), "net.json")
	e, err := Create(tp, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Teardown() })

	// The peer carries the declared MAC inside its namespace.
	err = Do(n.Namespace("a"), func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if got, want := l.Attrs().HardwareAddr.String(), MAC(n.Instance, 1, 1).String(); got != want {
			return fmt.Errorf("eth0 MAC %s, want %s", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Real traffic across the isolated bridge, between the two namespaces.
	ping := func() error {
		out, err := Command(context.Background(), n.Namespace("a"), "busybox", "ping", "-c", "1", "-W", "5", "192.168.77.2").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := ping(); err != nil {
		t.Fatalf("namespaces on the bridge cannot reach each other: %v", err)
	}
	// The cable fault setter really cuts the link, and plugging it back heals it.
	if err := SetLinkUp("", n.Iface("b", "i"), false); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err == nil {
		t.Fatal("ping crossed a link that is down")
	}
	if err := SetLinkUp("", n.Iface("b", "i"), true); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err != nil {
		t.Fatalf("after link-up: %v", err)
	}
	out, _ := exec.Command("iptables-save", "-t", "nat").Output()
	if !strings.Contains(string(out), "netenv:"+n.Bridge("p")) {
		t.Fatalf("no MASQUERADE rule for %s:\n%s", n.Bridge("p"), out)
	}
	// Creating the same network twice is refused rather than adopted.
	if _, err := Create(tp, filepath.Join(t.TempDir(), "other.json"), nil); err == nil {
		t.Fatal("a second Create over existing interfaces succeeded")
	}

	if err := e.Teardown(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, tp, rec)
}

// TestTeardownFromRecordAfterACrash builds a network in a child process that
// is killed before it can clean up; TeardownRecord in this process, reading
// only the record file, removes everything.
func TestTeardownFromRecordAfterACrash(t *testing.T) {
	requireNetenv(t)
	if os.Getenv("NETENV_CRASH_CHILD") == "" {
		tp, _ := testTopology("k")
		rec := filepath.Join(t.TempDir(), "net.json")
		cmd := exec.Command(os.Args[0], "-test.run=^TestTeardownFromRecordAfterACrash$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NETENV_CRASH_CHILD="+rec, fmt.Sprintf("NETENV_CRASH_PID=%d", os.Getpid()))
		out, err := cmd.CombinedOutput()
		t.Cleanup(func() { _ = TeardownRecord(rec, nil) })
		if err == nil || !strings.Contains(string(out), "netenv child: built") {
			t.Fatalf("child did not build and crash (err=%v):\n%s", err, out)
		}
		if _, err := netlink.LinkByName(tp.Bridges[0].Name); err != nil {
			t.Fatalf("the crashed child's bridge is not there, the test proves nothing: %v", err)
		}
		if err := TeardownRecord(rec, nil); err != nil {
			t.Fatal(err)
		}
		assertGone(t, tp, rec)
		return
	}
	rec := os.Getenv("NETENV_CRASH_CHILD")
	pid, _ := strconv.Atoi(os.Getenv("NETENV_CRASH_PID"))
	tp, _ := testTopologyFor("k", pid)
	if _, err := Create(tp, rec, nil); err != nil {
		fmt.Println("netenv child:", err)
		os.Exit(3)
	}
	fmt.Println("netenv child: built")
	os.Exit(7) // a crash: no teardown
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	requireNetenv(t)
	tp, _ := testTopology("f")
	// An address that cannot be added (a gateway outside every subnet makes
	// the route fail) after bridges and namespaces exist.
	tp.Veths[2].Gateway = netip.MustParseAddr("10.99.99.99")
	rec := filepath.Join(t.TempDir(), "net.json")
	if _, err := Create(tp, rec, nil); err == nil {
		t.Fatal("Create with an unreachable gateway succeeded")
	}
	assertGone(t, tp, rec)
}
