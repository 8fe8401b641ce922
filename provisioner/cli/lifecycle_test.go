package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/status"
)

// lifeRig is the example rack (a controller and a worker) on 127.0.0.0/24,
// served by the real boot services on loopback, which re-plan from the
// files on POST /api/v1/plan/reload as racker serve does; machines are
// fake BMCs with a simulated node behind each (simulateNode).
type lifeRig struct {
	t     *testing.T
	oem   string
	env   *Env
	flags []string
	url   string
	drive []string
	ctx   context.Context
	wg    sync.WaitGroup
}

func newLifeRig(t *testing.T) *lifeRig {
	oem, state := exampleRack(t)
	r := &lifeRig{t: t, oem: oem, flags: append(rackFlags(oem, state), "--subnet", "127.0.0.0/24", "--controller-type", "red")}
	r.env = &Env{OEMDir: oem, StateDir: state, MgmtMAC: "00:11:22:33:44:00", Stdout: io.Discard, Stderr: io.Discard}
	r.env.log = slog.New(slog.DiscardHandler)
	p := r.plan()
	release := &images.Release{OS: "testos", Version: "current", Dir: t.TempDir(), Files: []string{"flatcar_production_pxe.vmlinuz"},
		SigningKey: []byte("test key\n")}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	ln, served := serveOnLoopback(ctx, t, bootsvc.Config{Plan: p, StateDir: state, Release: release,
		Replan: func() (*plan.Plan, error) { return r.plan(), nil }})
	r.url = "http://" + ln.Addr().String()
	r.drive = []string{"--boot-services", r.url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s"}
	for _, n := range p.Nodes {
		r.machine(n)
	}
	t.Cleanup(func() { cancel(); r.wg.Wait(); <-served })
	return r
}

// plan is the rack's plan as the commands make it now.
func (r *lifeRig) plan() *plan.Plan {
	r.t.Helper()
	_, p, err := r.env.MakePlan(&PlanFlags{subnet: "127.0.0.0/24", Choices: plan.Choices{ControllerType: "red"}}, true)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// machine puts a simulated node behind n's fake BMC (n.IP is the address
// its callbacks come from).
func (r *lifeRig) machine(n plan.Node) {
	r.t.Cleanup(func() { bmc.ForgetFake(fakeBMCName(n.PrimaryMAC)) })
	r.wg.Add(1)
	go func() { defer r.wg.Done(); simulateNode(r.ctx, r.t, r.url, n) }()
}

// racker runs a racker command against the rig's rack.
func (r *lifeRig) racker(args ...string) (int, string, string) {
	r.t.Helper()
	return run(r.t, "", append(args, r.flags...)...)
}

func (r *lifeRig) status() map[string]status.Node {
	r.t.Helper()
	code, out, errs := r.racker("status", "-o", "json", "--boot-services", r.url)
	if code != 0 {
		r.t.Fatalf("status: exit %d: %s", code, errs)
	}
	var st status.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		r.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	m := map[string]status.Node{}
	for _, n := range st.Nodes {
		m[n.PrimaryMAC] = n
	}
	return m
}

// served lists the primary MACs the boot services plan for.
func (r *lifeRig) served() map[string]api.Node {
	r.t.Helper()
	ns, err := api.NewClient(r.url).Nodes(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	m := map[string]api.Node{}
	for _, n := range ns {
		m[n.PrimaryMAC] = n
	}
	return m
}

// samePlaces fails when a node of before (other than those in skip)
// changed hostname, addresses or role in after.
func samePlaces(t *testing.T, what string, before, after *plan.Plan, skip ...string) {
	t.Helper()
	for _, b := range before.Nodes {
		if strings.Contains(strings.Join(skip, " "), b.PrimaryMAC) {
			continue
		}
		a, ok := after.Find(b.PrimaryMAC)
		if !ok || a.Hostname != b.Hostname || a.IP != b.IP || a.BMCIP != b.BMCIP || a.Role != b.Role {
			t.Errorf("%s moved %s: %+v, was %+v", what, b.Hostname, a, b)
		}
	}
}

// A running rack lives: a server is added and only it is provisioned; a
// broken worker is replaced by a powered-off machine with new MACs, the
// command interrupted after nodes.csv was rewritten and run again; the
// added server is retired. No other node moves or is power-cycled.
func TestLifecycleAddReplaceRetire(t *testing.T) {
	r := newLifeRig(t)
	const ctrl, worker = "00:11:22:33:44:10", "00:11:22:33:44:20"
	if code, out, errs := r.racker(append([]string{"bootstrap"}, r.drive...)...); code != 0 {
		t.Fatalf("first bootstrap: exit %d\n%s\n%s", code, out, errs)
	}
	first := r.plan()

	// Add: a row appended; bootstrap asks the running boot services to
	// re-read nodes.csv and provisions only the new node.
	const added = "00:11:22:33:44:80"
	f, err := os.OpenFile(filepath.Join(r.oem, inventory.NodesFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("00:11:22:33:44:80, 00:11:22:33:44:81, , purple, added later\n")
	f.Close()
	grown := r.plan()
	samePlaces(t, "an addition", first, grown)
	newNode, ok := grown.Find(added)
	if !ok || newNode.Role != plan.Worker || len(grown.Controllers()) != 1 {
		t.Fatalf("the added node in the plan: %+v (controllers %v)", newNode, grown.Controllers())
	}
	r.machine(newNode)
	acts := map[string]int{}
	for _, mac := range []string{ctrl, worker} {
		acts[mac] = len(bmc.Fake(fakeBMCName(mac)).Actions())
	}
	code, out, errs := r.racker(append([]string{"bootstrap"}, r.drive...)...)
	if code != 0 {
		t.Fatalf("bootstrap after an addition: exit %d\n%s\n%s", code, out, errs)
	}
	for mac, n := range acts {
		if got := len(bmc.Fake(fakeBMCName(mac)).Actions()); got != n {
			t.Errorf("bootstrap after an addition power-cycled %s (%d actions, was %d)", mac, got, n)
		}
	}
	st := r.status()
	for _, mac := range []string{ctrl, worker, added} {
		if st[mac].Phase != orchestrator.Booted {
			t.Errorf("%s after the addition: %+v", mac, st[mac])
		}
	}

	// Replace the worker by a powered-off machine. The first run "crashed"
	// once nodes.csv was rewritten (what runReplace does before
	// finishReplace, done here by hand); the second finishes.
	old, _ := grown.Find(worker)
	const newPrimary, newBMC = "00:11:22:33:44:90", "00:11:22:33:44:91"
	if code, _, errs := r.racker(append([]string{"replace", old.Hostname, newPrimary, newPrimary}, r.drive...)...); code != 2 || !strings.Contains(errs, "same MAC") {
		t.Errorf("replace with the same MAC twice: exit %d: %s", code, errs)
	}
	if code, _, errs := r.racker(append([]string{"replace", old.Hostname, added, newBMC}, r.drive...)...); code == 0 || !strings.Contains(errs, "already in nodes.csv") {
		t.Errorf("replace by a machine of the rack: exit %d: %s", code, errs)
	}
	if err := plan.Replace(plan.NewStore(r.env.StateDir), old, newPrimary, newBMC, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := inventory.ReplaceRow(r.oem, worker, inventory.Node{PrimaryMAC: newPrimary, BMCMAC: newBMC, Type: "purple"}, "test crash"); err != nil {
		t.Fatal(err)
	}
	bmc.Fake(fakeBMCName(newPrimary)).SetPower(bmc.PowerOff)
	r.machine(plan.Node{PrimaryMAC: newPrimary, IP: old.IP, Hostname: old.Hostname})
	// What Racker kept of the BMCs: the old board's pin and IPMI protocol
	// must go (the new BMC answers at its address), the others stay.
	oldBMC, addedBMC := old.BMCIP.String(), newNode.BMCIP.String()
	writeBMCMemory(t, r.env.StateDir, []string{oldBMC + ":443", addedBMC + ":443"},
		[]string{oldBMC + ":623", addedBMC + ":623", newNode.BMCMAC})
	code, out, errs = r.racker(append([]string{"replace", old.Hostname, newPrimary, newBMC}, r.drive...)...)
	if code != 0 || !strings.Contains(out, old.Hostname+" installed and booted") {
		t.Fatalf("replace, run again after a crash: exit %d\n%s\n%s", code, out, errs)
	}
	replaced := r.plan()
	samePlaces(t, "a replacement", grown, replaced, worker)
	if n, ok := replaced.Find(newPrimary); !ok || n.Hostname != old.Hostname || n.IP != old.IP || n.BMCIP != old.BMCIP || n.Role != old.Role {
		t.Errorf("the replacement took %+v, want the place of %+v", n, old)
	}
	if _, ok := replaced.Find(worker); ok || !replaced.IsRetired(worker) || !replaced.IsRetired(old.BMCMAC) {
		t.Errorf("the old machine is still planned, or not refused: %v", replaced.Retired)
	}
	st = r.status()
	if _, ok := st[worker]; ok {
		t.Errorf("status still shows the replaced machine: %+v", st[worker])
	}
	if n := st[newPrimary]; n.Phase != orchestrator.Booted || n.Hostname != old.Hostname {
		t.Errorf("the replacement in status: %+v", n)
	}
	if _, ok := r.served()[worker]; ok {
		t.Error("the boot services still serve the replaced machine")
	}
	if pins, protos := readBMCMemory(t, r.env.StateDir); strings.Join(pins, " ") != addedBMC+":443" ||
		strings.Join(protos, " ") != newNode.BMCMAC+" "+addedBMC+":623" {
		t.Errorf("after the replacement the state folder keeps pins %v and protocols %v; want the old BMC's (%s) gone, the others kept", pins, protos, oldBMC)
	}

	// Retire the added worker: off through its BMC, out of nodes.csv, the
	// plan, status and the boot services; a controller needs --yes.
	if code, _, errs := r.racker("retire", "racker-controller-0", "--bmc-driver", "fake", "--boot-services", r.url); code == 0 || !strings.Contains(errs, "--yes") {
		t.Errorf("retire of a controller off a terminal without --yes: exit %d: %s", code, errs)
	}
	if code, _, errs := r.racker("retire", "racker-worker-9", "--bmc-driver", "fake", "--boot-services", r.url); code == 0 || !strings.Contains(errs, "not in the rack") {
		t.Errorf("retire of an unknown node: exit %d: %s", code, errs)
	}
	if code, _, errs := r.racker("retire", newNode.Hostname, "--wipe", "--force"); code != 2 || !strings.Contains(errs, "not both") {
		t.Errorf("retire --wipe --force: exit %d: %s", code, errs)
	}
	code, out, errs = r.racker(append([]string{"retire", newNode.Hostname, "--wipe"}, r.drive...)...)
	if code != 0 || !strings.Contains(out, "out of the rack, powered off") {
		t.Fatalf("retire --wipe: exit %d\n%s\n%s", code, out, errs)
	}
	if p := bmc.Fake(fakeBMCName(added)).Power(); p != bmc.PowerOff {
		t.Errorf("the retired node is %s", p)
	}
	if g, ok := wipedInstalls.Load(added); !ok || g.(int) != 1 {
		t.Errorf("retire --wipe did not reinstall the node with every disk wiped (generation %v)", g)
	}
	if acts := bmc.Fake(fakeBMCName(added)).Actions(); acts[len(acts)-1] != bmc.ActionOff {
		t.Errorf("the last BMC action of retire --wipe: %v, want off after the wipe", acts)
	}
	if pins, protos := readBMCMemory(t, r.env.StateDir); len(pins)+len(protos) != 0 {
		t.Errorf("after the retirement the state folder keeps pins %v and protocols %v of the retired BMC", pins, protos)
	}
	retired := r.plan()
	samePlaces(t, "a retirement", replaced, retired, added)
	if _, ok := retired.Find(added); ok || !retired.IsRetired(added) {
		t.Errorf("the retired node is still planned, or not refused")
	}
	if _, ok := r.status()[added]; ok {
		t.Error("status still shows the retired node")
	}
	if _, ok := r.served()[added]; ok {
		t.Error("the boot services still serve the retired node")
	}
	b, _ := os.ReadFile(filepath.Join(r.oem, inventory.NodesFile))
	if !strings.Contains(string(b), "# racker retire ") || !strings.Contains(string(b), "# test crash: was 00:11:22:33:44:20") {
		t.Errorf("nodes.csv after replace and retire:\n%s", b)
	}
	// Run again, there is nothing left to do, and it says so.
	if code, out, errs := r.racker("retire", newNode.Hostname, "--bmc-driver", "fake", "--boot-services", r.url); code != 0 || !strings.Contains(out, "left the rack already") {
		t.Errorf("retire run again: exit %d\n%s\n%s", code, out, errs)
	}

	// A retire interrupted once the row was a comment: run again, it
	// finds the node in the provisioning state and finishes.
	if err := inventory.RemoveRow(r.oem, newPrimary, "test crash"); err != nil {
		t.Fatal(err)
	}
	code, out, errs = r.racker("retire", old.Hostname, "--bmc-driver", "fake", "--boot-services", r.url)
	if code != 0 || !strings.Contains(out, "out of the rack, powered off") {
		t.Fatalf("retire after a crash: exit %d\n%s\n%s", code, out, errs)
	}
	if p := bmc.Fake(fakeBMCName(newPrimary)).Power(); p != bmc.PowerOff {
		t.Errorf("the node retired after a crash is %s", p)
	}
	last := r.plan()
	samePlaces(t, "a retirement after a crash", retired, last, newPrimary)
	if _, ok := r.status()[newPrimary]; ok || !last.IsRetired(newPrimary) || len(last.Nodes) != 1 {
		t.Errorf("after the retirement after a crash: nodes %+v, retired %v", last.Nodes, last.Retired)
	}
}

// writeBMCMemory writes the state folder's BMC pins and protocols as
// Racker keeps them, with the given keys.
func writeBMCMemory(t *testing.T, state string, pins, protocols []string) {
	t.Helper()
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	pf := map[string]map[string]any{"bmcs": {}}
	for _, k := range pins {
		pf["bmcs"][k] = map[string]any{"key": "sha256:" + strings.Repeat("ab", 32), "pinned_at": since}
	}
	prf := map[string]any{}
	for _, k := range protocols {
		prf[k] = map[string]any{"protocol": "lanplus", "since": since}
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{bmc.PinsFile: pf, bmc.ProtocolsFile: prf} {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(state, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// readBMCMemory lists the keys of the state folder's BMC pins and
// protocols, sorted.
func readBMCMemory(t *testing.T, state string) (pins, protocols []string) {
	t.Helper()
	var pf struct{ BMCs map[string]any }
	var prf map[string]any
	for name, v := range map[string]any{bmc.PinsFile: &pf, bmc.ProtocolsFile: &prf} {
		b, err := os.ReadFile(filepath.Join(state, name))
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("%s: %s %v", name, b, err)
		}
	}
	return slices.Sorted(maps.Keys(pf.BMCs)), slices.Sorted(maps.Keys(prf))
}
