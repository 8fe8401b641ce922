package status

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

const (
	macA = "00:11:22:33:44:10" // controller
	macB = "00:11:22:33:44:20" // worker
	macC = "00:11:22:33:44:30" // excluded
	macD = "00:11:22:33:44:40" // recorded, no longer planned
)

func testPlan() *plan.Plan {
	return &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"),
		Management: plan.Node{PrimaryMAC: "00:11:22:33:44:00", Role: plan.Management, IP: netip.MustParseAddr("172.24.213.1")},
		Nodes: []plan.Node{
			{PrimaryMAC: macB, Role: plan.Worker, Hostname: "r-worker-1", IP: netip.MustParseAddr("172.24.213.3")},
			{PrimaryMAC: macA, Role: plan.Controller, Hostname: "r-controller-1", IP: netip.MustParseAddr("172.24.213.2")},
		},
		Excluded: []plan.Node{{PrimaryMAC: macC, Role: plan.Excluded, Hostname: "", IP: netip.MustParseAddr("172.24.213.4")}},
	}
}

// bootView is a fake of the boot services' GET /api/v1/nodes, for this
// unit test (the CLI's tests run the real one).
type bootView struct {
	nodes []api.Node
	err   error
}

func (b bootView) Nodes(context.Context) ([]api.Node, error) { return b.nodes, b.err }

func byMAC(st Status) map[string]Node {
	m := map[string]Node{}
	for _, n := range st.Nodes {
		m[n.PrimaryMAC] = n
	}
	return m
}

func TestPlanOnly(t *testing.T) {
	st, err := Collect(context.Background(), Sources{StateDir: t.TempDir(), Plan: testPlan()})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 || st.Nodes[0].PrimaryMAC != macC || st.Nodes[1].Hostname != "r-controller-1" || st.Nodes[2].Hostname != "r-worker-1" {
		t.Fatalf("not every planned node, by hostname: %+v", st.Nodes)
	}
	m := byMAC(st)
	if m[macA].Phase != orchestrator.Pending || m[macA].Role != "controller" || m[macA].IP != "172.24.213.2" || m[macC].Phase != orchestrator.Excluded {
		t.Errorf("plan view: %+v", m)
	}
}

// What the orchestrator recorded reaches status, failure reasons and last
// errors included, also for a node the plan no longer has.
func TestRecordsWithReasonsAndErrors(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	yes := true
	err := orchestrator.Update(dir, func(st *orchestrator.State) error {
		st.Nodes[macA] = &orchestrator.Node{PrimaryMAC: macA, Hostname: "r-controller-1", Phase: orchestrator.BMCCheck, PhaseSince: at,
			LastError: "diag: BMC ipmi://172.24.213.102: no answer", BMCReachable: new(bool)}
		st.Nodes[macB] = &orchestrator.Node{PrimaryMAC: macB, Phase: orchestrator.Excluded, Failures: 2,
			Reason: "no progress in phase installing for 30m0s (after 1 retries)", BMCReachable: &yes, Power: "off", OS: "flatcar 4081.2.0"}
		st.Nodes[macD] = &orchestrator.Node{PrimaryMAC: macD, Hostname: "old-node", Role: "worker", Phase: orchestrator.Booted}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Collect(context.Background(), Sources{StateDir: dir, Plan: testPlan()})
	if err != nil {
		t.Fatal(err)
	}
	m := byMAC(st)
	if a := m[macA]; a.Phase != orchestrator.BMCCheck || a.LastError == "" || a.BMCReachable == nil || *a.BMCReachable || !a.PhaseSince.Equal(at) {
		t.Errorf("controller: %+v", a)
	}
	if b := m[macB]; b.Reason == "" || b.Failures != 2 || b.Power != "off" || b.OS != "flatcar 4081.2.0" || b.Hostname != "r-worker-1" {
		t.Errorf("worker: %+v", b)
	}
	if d := m[macD]; d.Hostname != "old-node" || d.Phase != orchestrator.Booted {
		t.Errorf("recorded node missing from the plan: %+v", d)
	}
}

// The boot services' observations move a recorded phase forward, never
// back, and only for what happened after the node's last transition.
func TestBootServicesFresherView(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	orchestrator.Update(dir, func(st *orchestrator.State) error {
		st.Nodes[macA] = &orchestrator.Node{PrimaryMAC: macA, Phase: orchestrator.PXERequested, PhaseSince: at, LastEvent: "dhcp", LastEventAt: at}
		st.Nodes[macB] = &orchestrator.Node{PrimaryMAC: macB, Phase: orchestrator.Pending, PhaseSince: at}
		st.Nodes[macC] = &orchestrator.Node{PrimaryMAC: macC, Phase: orchestrator.Excluded, PhaseSince: at}
		return nil
	})
	later, earlier := at.Add(time.Minute), at.Add(-time.Minute)
	boot := bootView{nodes: []api.Node{
		{PrimaryMAC: macA, Phase: api.PhaseInstalled, LastEvent: api.KindInstalled, LastEventAt: later, InstallGeneration: 3},
		{PrimaryMAC: macB, Phase: api.PhaseBooted, LastEvent: api.KindBooted, LastEventAt: later},
		{PrimaryMAC: macC, Phase: api.PhaseInstalling, LastEvent: api.KindInstalling, LastEventAt: later},
	}}
	st, err := Collect(context.Background(), Sources{StateDir: dir, Plan: testPlan(), Boot: boot})
	if err != nil {
		t.Fatal(err)
	}
	m := byMAC(st)
	if a := m[macA]; a.Phase != orchestrator.Installed || a.InstallGeneration != 3 || a.LastEvent != "installed" || !a.LastEventAt.Equal(later) {
		t.Errorf("A with a newer observation: %+v", a)
	}
	if b := m[macB]; b.Phase != orchestrator.Pending || b.LastEvent != "booted" {
		t.Errorf("B, pending (no run started it): %+v", b)
	}
	if c := m[macC]; c.Phase != orchestrator.Excluded {
		t.Errorf("C, left out: %+v", c)
	}

	// An observation from before the last transition (the boot services keep
	// a node's phase across a reinstall request) does not count.
	boot.nodes[0].LastEventAt = earlier
	st, _ = Collect(context.Background(), Sources{StateDir: dir, Plan: testPlan(), Boot: boot})
	if a := byMAC(st)[macA]; a.Phase != orchestrator.PXERequested || a.LastEvent != "dhcp" {
		t.Errorf("A with an older observation: %+v", a)
	}
	// Boot services that do not answer: the recorded state.
	st, err = Collect(context.Background(), Sources{StateDir: dir, Plan: testPlan(), Boot: bootView{err: errors.New("connection refused")}})
	if err != nil || byMAC(st)[macA].Phase != orchestrator.PXERequested {
		t.Errorf("boot services down: %+v, %v", st, err)
	}
}
