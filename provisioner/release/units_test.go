package release

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// The installer's contract with the host's systemd (fakeServices stands
// in for it): a first install enables and starts racker-serve, so Racker
// serves as soon as the installer image ran; update, upgrade and rollback
// restart it, so the new version serves and not the process from before,
// also when it was enabled but had stopped; a unit the operator disabled
// and stopped is left alone; a changed unit file is reloaded first.
func TestInstallerStartsAndRestartsTheServeUnit(t *testing.T) {
	const unit = "racker-serve.service"
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0"}, testRelease{version: "1.0.1"}, testRelease{version: "1.1.0"},
		testRelease{version: "2.0.0", unit: "[Service]\nExecStart=/opt/bin/racker serve --v2\n"})
	in := testInstaller(t, t.TempDir())
	svc := &fakeServices{available: true}
	in.Services = svc
	step := func(what string, do func() (*Result, error), wantCalls ...string) *Result {
		t.Helper()
		svc.calls = nil
		res, err := do()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !slices.Equal(svc.calls, wantCalls) {
			t.Fatalf("%s: systemctl calls %q, want %q", what, svc.calls, wantCalls)
		}
		return res
	}
	install := func(v string) func() (*Result, error) {
		return func() (*Result, error) { return installFrom(t, in, reg.ref, v, Options{Migrate: true}) }
	}

	res := step("first install", install("1.0.0"), "daemon-reload", "enable "+unit, "start "+unit)
	if !slices.Equal(res.Started, []string{unit}) || !svc.active[unit] || !svc.enabled[unit] {
		t.Fatalf("first install: started %v, active %v, enabled %v", res.Started, svc.active, svc.enabled)
	}
	res = step("update", install("1.0.1"), "restart "+unit)
	if !slices.Equal(res.Restarted, []string{unit}) || len(res.Started) != 0 {
		t.Fatalf("update: %+v", res)
	}
	svc.active[unit] = false // it stopped (crashed, or the operator stopped it) but is enabled
	step("upgrade with a changed unit", install("2.0.0"), "daemon-reload", "restart "+unit)
	step("rollback", func() (*Result, error) { return in.Rollback(context.Background()) }, "daemon-reload", "restart "+unit)
	step("reinstall of the running version", install("1.0.1"), "restart "+unit)
	svc.active[unit], svc.enabled[unit] = false, false // the operator disabled it
	res = step("update of a disabled unit", install("1.1.0"))
	if len(res.Restarted) != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "disabled and stopped") {
		t.Fatalf("a disabled unit: %+v", res)
	}
	assertCurrent(t, in, "1.1.0")
}
