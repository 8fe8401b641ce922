package netenv

import (
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// A live environment grows by a namespace with a veth on its bridge (a
// server added to a simulated rack) and shrinks again; its record follows,
// so a Teardown after either removes exactly what exists; a namespace that
// exists already is refused and nothing is left of the attempt.
func TestGrowAndShrinkALiveEnvironment(t *testing.T) {
	requireNetenv(t)
	tp, n := testTopology("g")
	e := ForTest(t, tp)
	ns := n.Namespace("c")
	v := Veth{Host: n.Iface("c", "i"), Bridge: n.Bridge("i"), Peer: "eth0", Namespace: ns, MAC: MAC(n.Instance, 3, 1),
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.3/24")}}
	if err := e.Grow([]string{ns}, []Veth{v}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(v.Host)
	if err != nil || l.Attrs().MasterIndex == 0 || !NamespaceExists(ns) {
		t.Fatalf("after Grow: link %v (%v), namespace %v", l, err, NamespaceExists(ns))
	}
	// The new namespace reaches an old one over the bridge.
	if out, err := Command(t.Context(), ns, "busybox", "ping", "-c", "1", "-W", "2", "192.168.77.1").CombinedOutput(); err != nil {
		t.Errorf("ping from the grown namespace: %v\n%s", err, out)
	}
	reopened, err := Open(e.RecordPath(), nil)
	if err != nil || len(reopened.Topology.Veths) != len(tp.Veths)+1 || len(reopened.Topology.Namespaces) != len(tp.Namespaces)+1 {
		t.Fatalf("the record after Grow: %+v %v", reopened, err)
	}
	if err := e.Grow([]string{ns}, nil); err == nil {
		t.Error("Grow took a namespace that exists")
	}
	if !NamespaceExists(ns) {
		t.Fatal("a refused Grow removed the namespace it did not make")
	}
	for range 2 { // again: already gone is fine
		if err := e.Shrink([]string{ns}, []string{v.Host}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(v.Host); err == nil || NamespaceExists(ns) {
		t.Error("Shrink left the veth or the namespace")
	}
	if _, err := os.Stat(e.RecordPath()); err != nil {
		t.Fatal(err)
	}
	if r, _ := readRecord(e.RecordPath()); r != nil {
		for _, it := range r.Items {
			if it.Name == ns || it.Name == v.Host {
				t.Errorf("the record still lists %+v", it)
			}
		}
	}
}
