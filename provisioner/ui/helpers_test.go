package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// testRack is a rack for the view's tests: a real plan of a generated
// nodes.csv, a real state folder that the test writes as a bootstrap would
// (orchestrator.Update, the transition log's JSON lines, console logs), and
// a fake of the boot services: an in-memory event journal with their long
// poll. The view reads it through Local, the status package's merge,
// exactly as in racker serve; only the boot services are fake.
type testRack struct {
	t       testing.TB
	dir     string
	plan    *plan.Plan
	journal *fakeJournal
	src     *testSource
}

// testSource is Local with the boot services' events from the fake journal.
type testSource struct {
	*Local
	j *fakeJournal
}

func (s *testSource) Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error) {
	return s.j.Events(ctx, after, wait)
}

// newTestRack plans a rack of rows machines (the management node first).
func newTestRack(t testing.TB, rows int) *testRack {
	t.Helper()
	oem := t.TempDir()
	var csv strings.Builder
	csv.WriteString(inventory.Header + "\n")
	for i := 0; i < rows; i++ {
		typ, comment := "bios", ""
		if i%3 == 2 {
			typ = "uefi"
		}
		if i == 0 {
			typ, comment = "mgmt", "mgmt node"
		}
		fmt.Fprintf(&csv, "%s, %s, %s, %s, %s\n", mac(0, i), mac(1, i), mac(2, i), typ, comment)
	}
	for name, body := range map[string]string{inventory.NodesFile: csv.String(), "ipmi_user": "racker\n", "ipmi_password": "secret\n"} {
		if err := os.WriteFile(filepath.Join(oem, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := inventory.Load(inventory.Options{Dir: oem, MgmtMAC: mac(0, 0),
		LocalMACs: func() (map[string]string, error) { return map[string]string{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(inv, plan.Choices{ClusterName: "lab"}, plan.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRack{t: t, dir: t.TempDir(), plan: p, journal: &fakeJournal{notify: make(chan struct{})}}
	tr.src = &testSource{Local: NewLocal(tr.dir, p, nil, nil), j: tr.journal}
	return tr
}

// mac is the MAC of row i: kind 0 primary, 1 BMC, 2 secondary.
func mac(kind, i int) string { return fmt.Sprintf("52:54:%02x:00:%02x:%02x", kind, i/256, i%256) }

// set changes nodes' records as the orchestrator does, under its lock.
func (tr *testRack) set(fn func(st *orchestrator.State)) {
	tr.t.Helper()
	if err := orchestrator.Update(tr.dir, func(st *orchestrator.State) error { fn(st); return nil }); err != nil {
		tr.t.Fatal(err)
	}
}

// move puts a server into a phase and logs the transition with its cause.
func (tr *testRack) move(n plan.Node, to orchestrator.Phase, cause string, at time.Time, mutate ...func(*orchestrator.Node)) {
	tr.t.Helper()
	var from orchestrator.Phase
	tr.set(func(st *orchestrator.State) {
		rec := st.Nodes[n.PrimaryMAC]
		if rec == nil {
			rec = &orchestrator.Node{PrimaryMAC: n.PrimaryMAC, Hostname: n.Hostname, Role: string(n.Role), Type: n.Type, Phase: orchestrator.Pending}
			st.Nodes[n.PrimaryMAC] = rec
		}
		from = rec.Phase
		rec.Phase, rec.PhaseSince = to, at
		for _, m := range mutate {
			m(rec)
		}
	})
	b, _ := json.Marshal(orchestrator.Transition{Time: at, MAC: n.PrimaryMAC, Hostname: n.Hostname, From: from, To: to, Cause: cause})
	f, err := os.OpenFile(filepath.Join(tr.dir, orchestrator.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer f.Close()
	f.Write(append(b, '\n'))
}

// console appends to a node's recorded console.
func (tr *testRack) console(host, text string) {
	tr.t.Helper()
	dir := filepath.Join(tr.dir, ConsoleDir)
	os.MkdirAll(dir, 0o755)
	f, err := os.OpenFile(filepath.Join(dir, host+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(text)
}

// server returns the i-th server of the plan (nodes.csv order, 0-based).
func (tr *testRack) server(i int) plan.Node { return tr.plan.Servers()[i] }

// fakeJournal stands in for the boot services' event journal (GET
// /api/v1/events?after=&wait=): sequence numbers, pages, long poll.
type fakeJournal struct {
	mu     sync.Mutex
	evs    []api.Event
	notify chan struct{}
}

func (j *fakeJournal) add(mac string, kind api.EventKind, msg string) {
	j.mu.Lock()
	j.evs = append(j.evs, api.Event{Seq: uint64(len(j.evs) + 1), Time: time.Now().UTC(), MAC: mac, Kind: kind, Message: msg})
	close(j.notify)
	j.notify = make(chan struct{})
	j.mu.Unlock()
}

func (j *fakeJournal) Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error) {
	deadline := time.After(wait)
	for {
		j.mu.Lock()
		var out []api.Event
		for _, e := range j.evs {
			if e.Seq > after && len(out) < 1000 {
				out = append(out, e)
			}
		}
		ch := j.notify
		j.mu.Unlock()
		if len(out) > 0 || wait <= 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, nil
		case <-ch:
		}
	}
}

// busyRack puts the servers of a rack into every phase, as a bootstrap
// half-way does: some booted, some installing, one failed with its
// reason, one excluded, one with a BMC that does not answer yet.
func (tr *testRack) busyRack(now time.Time) {
	tr.t.Helper()
	phases := []orchestrator.Phase{orchestrator.Booted, orchestrator.Installing, orchestrator.Netbooting, orchestrator.PXERequested,
		orchestrator.FirstBoot, orchestrator.BMCCheck, orchestrator.Pending, orchestrator.Installed}
	yes, no := true, false
	tr.set(func(st *orchestrator.State) {
		for i, n := range tr.plan.Servers() {
			rec := &orchestrator.Node{PrimaryMAC: n.PrimaryMAC, Hostname: n.Hostname, Role: string(n.Role), Type: n.Type,
				Phase: phases[i%len(phases)], PhaseSince: now.Add(-time.Duration(i) * 7 * time.Second), BMCReachable: &yes, Power: "on", BootDevice: "pxe"}
			switch {
			case i == 3:
				rec.Phase, rec.Reason, rec.Failures = orchestrator.Failed, "the node reported failed: flatcar-install: download of the image failed", 1
			case i == 4:
				rec.Phase, rec.Reason, rec.Power = orchestrator.Excluded, "excluded with --exclude", "off"
			case rec.Phase == orchestrator.BMCCheck:
				rec.BMCReachable, rec.LastError, rec.Power, rec.BootDevice = &no, "diag: no answer from the BMC", "", ""
			case rec.Phase == orchestrator.Booted:
				rec.OS, rec.BootDevice, rec.InstallGeneration = "testos current", "disk", 1
			}
			st.Nodes[n.PrimaryMAC] = rec
		}
	})
}
