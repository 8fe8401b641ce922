package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

var testenvRequire = testenv.RequireCommand // skips outside CI, fails in CI

// An install replaces the unit file only while it is one a release
// shipped: a unit changed by hand is kept, the release's is written beside
// it and the result says to use a drop-in; racker.env is written once and
// never overwritten.
func TestUnitsChangedByHandAreKept(t *testing.T) {
	unitA := "[Service]\nType=notify\nExecStart=/opt/bin/racker serve\n"
	unitB := unitA + "ProtectHome=yes\n"
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0", unit: unitA}, testRelease{version: "1.0.1", unit: unitB}, testRelease{version: "1.1.0", unit: unitB})
	in := testInstaller(t, t.TempDir())
	in.Services = &fakeServices{available: true, active: map[string]bool{}}
	unit := filepath.Join(in.Layout.Root, "etc/systemd/system/racker-serve.service")
	env := filepath.Join(in.Layout.Root, EnvFile)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}

	res, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
	must(t, err)
	if read(unit) != unitA || !strings.Contains(read(env), "RACKER_SERVE_FLAGS") {
		t.Fatalf("first install: unit %q, env %q", read(unit), read(env))
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "systemctl edit racker-serve") }) {
		t.Errorf("the first install does not say where local settings go: %v", res.Notes)
	}

	// Changed by hand, then an update that brings a new unit.
	local := unitA + "Environment=LOCAL=1\n"
	must(t, os.WriteFile(unit, []byte(local), 0o644))
	must(t, os.WriteFile(env, []byte("RACKER_PXE_INTERFACE=eth9\n"), 0o644))
	res, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
	must(t, err)
	if read(unit) != local || read(unit+NewUnitSuffix) != unitB {
		t.Fatalf("a unit changed by hand was overwritten: unit %q, new %q", read(unit), read(unit+NewUnitSuffix))
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool {
		return strings.Contains(n, "changed on this host") && strings.Contains(n, "systemctl edit racker-serve.service")
	}) {
		t.Errorf("no note about the kept unit: %v", res.Notes)
	}
	if read(env) != "RACKER_PXE_INTERFACE=eth9\n" {
		t.Errorf("racker.env overwritten: %q", read(env))
	}

	// The changes moved to a drop-in and the unit put back as shipped:
	// the next install replaces it again.
	must(t, os.WriteFile(unit, []byte(unitA), 0o644))
	_, err = installFrom(t, in, reg.ref, "1.1.0", Options{})
	must(t, err)
	if read(unit) != unitB {
		t.Fatalf("a shipped unit was not replaced: %q", read(unit))
	}
	if _, err := os.Stat(unit + NewUnitSuffix); !os.IsNotExist(err) {
		t.Errorf("the stale %s is left: %v", NewUnitSuffix, err)
	}
}

// The unit Racker ships: Type=notify, the settings file, the flags from
// it, exactly the capabilities serve uses, and nothing systemd's own
// parser (systemd-analyze verify) rejects or ignores.
func TestShippedUnit(t *testing.T) {
	path := filepath.Join("..", "..", "dist", "systemd", "racker-serve.service")
	b, err := os.ReadFile(path)
	must(t, err)
	unit := string(b)
	for _, want := range []string{"\nType=notify\n", "\nEnvironmentFile=-" + EnvFile + "\n",
		"\nExecStart=/opt/bin/racker serve --log-format json $RACKER_SERVE_FLAGS\n",
		"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
		"\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=full\n", "systemctl edit racker-serve"} {
		if !strings.Contains(unit, want) {
			t.Errorf("%s lacks %q", path, strings.TrimSpace(want))
		}
	}
	analyze := testenvRequire(t, "systemd-analyze")
	root := t.TempDir()
	for _, d := range []string{"opt/bin", "bin", "etc/systemd/system"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for _, exe := range []string{"opt/bin/racker", "bin/kill"} {
		must(t, os.WriteFile(filepath.Join(root, exe), []byte("#!/bin/sh\n"), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/systemd/system/racker-serve.service"), b, 0o644))
	out, _ := exec.Command(analyze, "verify", "--man=no", "--root="+root, "/etc/systemd/system/racker-serve.service").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "racker-serve.service:") && !strings.Contains(l, "sysinit.target not found") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}
