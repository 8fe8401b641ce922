package bootsvc

import (
	"net/netip"
	"testing"

	"github.com/racker/racker/provisioner/bootsvc/internal/dhcp"
	"github.com/racker/racker/provisioner/plan"
)

func TestReservationsCoverNodesBMCsAndExcludedButNotTheServer(t *testing.T) {
	a := netip.MustParseAddr
	p := &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"),
		Management: plan.Node{PrimaryMAC: "00:00:00:00:00:01", BMCMAC: "00:00:00:00:00:02", SecondaryMAC: "00:00:00:00:00:03", IP: a("172.24.213.1")},
		Nodes: []plan.Node{{PrimaryMAC: "00:00:00:00:01:01", BMCMAC: "00:00:00:00:01:02", Hostname: "racker-controller-0",
			IP: a("172.24.213.2"), BMCIP: a("172.24.213.3")}},
		Excluded: []plan.Node{{PrimaryMAC: "00:00:00:00:02:01", BMCMAC: "00:00:00:00:02:02", IP: a("172.24.213.4"), BMCIP: a("172.24.213.5")}},
	}
	got := reservations(p)
	want := []dhcp.Reservation{
		{MAC: "00:00:00:00:01:01", IP: a("172.24.213.2"), Hostname: "racker-controller-0", Kind: dhcp.KindNode},
		{MAC: "00:00:00:00:01:02", IP: a("172.24.213.3"), Kind: dhcp.KindBMC},
		{MAC: "00:00:00:00:02:01", IP: a("172.24.213.4"), Kind: dhcp.KindNode},
		{MAC: "00:00:00:00:02:02", IP: a("172.24.213.5"), Kind: dhcp.KindBMC},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d reservations, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("reservation %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
