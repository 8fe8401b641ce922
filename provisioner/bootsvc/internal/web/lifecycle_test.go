package web

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A plan that retires a machine (racker retire, or the old machine of a
// racker replace) drops its target from memory and from the targets file,
// and the machine's iPXE request is no longer a node's.
func TestRetiredMachineTargetDropped(t *testing.T) {
	r := newRig(t)
	if _, err := r.srv.store.markForInstall(macC, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(r.state, TargetsFile)); !strings.Contains(string(b), macC) {
		t.Fatalf("target not written: %s", b)
	}
	p := testPlan()
	gone := p.Nodes[2]
	p.Nodes = p.Nodes[:2]
	p.Retired = []string{gone.PrimaryMAC, gone.BMCMAC}
	r.srv.SetPlan(p)
	if b, _ := os.ReadFile(filepath.Join(r.state, TargetsFile)); strings.Contains(string(b), macC) {
		t.Errorf("the retired machine's target is still in %s: %s", TargetsFile, b)
	}
	if _, ok := r.srv.store.node(macC); ok {
		t.Error("the retired machine is still a planned node")
	}
	if code, body := r.get("/ipxe?mac=" + macC); code != 200 || strings.Contains(body, "ignition.config.url") {
		t.Errorf("iPXE for the retired machine: %d %s", code, body)
	}
}

// POST /api/v1/plan/reload re-plans through Config.Replan, only for the
// management node; without a Replan it says the services cannot.
func TestPlanReloadEndpoint(t *testing.T) {
	r := newRig(t)
	if code, _, _ := r.do(nil, "POST", "/api/v1/plan/reload", nil); code != 404 {
		t.Errorf("reload without Replan: %d, want 404", code)
	}
	calls := 0
	r.srv.cfg.Replan = func() error { calls++; return nil }
	if code, _, _ := r.do(nil, "POST", "/api/v1/plan/reload", nil); code != 204 || calls != 1 {
		t.Errorf("reload from loopback: %d after %d calls, want 204 after 1", code, calls)
	}
	// A node (any address but the management node's) may not.
	req := httptest.NewRequest("POST", "/api/v1/plan/reload", nil)
	req.RemoteAddr = "172.24.213.10:5000"
	rec := httptest.NewRecorder()
	r.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || calls != 1 {
		t.Errorf("reload from a node: %d after %d calls, want 403 and no call", rec.Code, calls)
	}
	r.srv.cfg.Replan = func() error { return errors.New("nodes.csv line 3: bad MAC") }
	code, body, _ := r.do(nil, "POST", "/api/v1/plan/reload", nil)
	if code != 409 || !strings.Contains(string(body), "nodes.csv line 3") {
		t.Errorf("a failed reload: %d %s", code, body)
	}
}
