package bootsvc_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

// TestRetiredMACGetsNothing: a worker is retired (racker retire --force: its
// BMC does not answer) beside a running racker serve with a dynamic pool.
// The serve takes the new plan over HTTP at once: the retired MACs get no
// answer at all from then on — not their old address, not one from the
// pool — and their leases are gone; the other node is served as before.
func TestRetiredMACGetsNothing(t *testing.T) {
	node2 := rackNode{primary: "02:bb:00:00:20:01", bmc: "02:bb:00:00:20:02", secondary: "02:bb:00:00:20:03", typ: "worker"}
	n := newTestNet(t)
	r := newRack(t, n, node1, node2)
	s := serve(t, n, r, "--dynamic-pool")
	n.setClientMAC(t, node2.primary)
	if v := udhcpc(t, n); v["ip"] != "172.24.213.4" {
		t.Fatalf("before the retirement node2 got %q", v["ip"])
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := netenv.Command(context.Background(), n.srvNS, self, "retire", node2.primary, "--force", "--oem-dir", r.oem, "--state-dir", r.state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--boot-services", "http://172.24.213.1:8080", "--bmc-driver", "ipmi")
	cmd.Env = append(os.Environ(), asRacker+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("racker retire --force:\n%s", out)
	if err != nil || !strings.Contains(string(out), "out of the rack, NOT powered off") {
		t.Fatalf("racker retire --force: %v\n%s", err, out)
	}
	if !strings.Contains(readFile(s.log), "lease of a machine that left the rack taken back") {
		t.Errorf("the running serve did not take the new plan:\n%s\nretire said:\n%s", readFile(s.log), out)
	}
	for _, mac := range []string{node2.primary, node2.bmc} {
		n.setClientMAC(t, mac)
		if v := udhcpc(t, n, "-V", "PXEClient:Arch:00000:UNDI:002001"); len(v) != 0 {
			t.Errorf("retired MAC %s got an answer: %v", mac, v)
		}
		if _, ok, _ := leases.Lookup(r.state, mac); ok {
			t.Errorf("retired MAC %s still has a lease", mac)
		}
	}
	n.setClientMAC(t, node1.primary)
	if v := udhcpc(t, n); v["ip"] != "172.24.213.2" {
		t.Errorf("the other node got %q after the retirement, want its 172.24.213.2", v["ip"])
	}
	if b, _ := os.ReadFile(r.oem + "/nodes.csv"); !strings.Contains(string(b), "# racker retire ") {
		t.Errorf("nodes.csv after the retirement:\n%s", b)
	}
}
