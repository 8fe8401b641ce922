package cli

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/release"
)

// changelogSections are the test project's release notes, newest first.
var changelogSections = []struct{ version, text string }{
	{"2.0.0", "## [2.0.0] - 2026-12-20\n\n### Changed\n- **Breaking:** `racker plan -o json` names nodes by hostname.\n- **Migration:** plan.json is rewritten in the\n  version 2 layout.\n"},
	{"1.0.2", "## [1.0.2] - 2026-12-12\n\n### Fixed\n- The 1.0.2 fix: leases survive a restart.\n"},
	{"1.0.1", "## [1.0.1] - 2026-12-05\n\n### Fixed\n- The 1.0.1 fix: TFTP windowsize.\n"},
	{"1.0.0", "## [1.0.0] - 2026-12-01\n\n### Added\n- The first release.\n"},
}

// changelogAt is CHANGELOG.md as it stood when version was released.
func changelogAt(version string) string {
	v, _ := release.ParseVersion(version)
	var b strings.Builder
	b.WriteString("# Changelog\n\n## [Unreleased]\n\n")
	for _, s := range changelogSections {
		if sv, _ := release.ParseVersion(s.version); !sv.GreaterThan(v) {
			b.WriteString(s.text + "\n")
		}
	}
	return b.String()
}

// publishWithChangelogs pushes releases built the way make image builds
// them, each with the changelog of its day (2.0.0 with state version 2 and
// its migration), to an in-process registry, and returns its reference.
func publishWithChangelogs(t *testing.T, versions ...string) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/racker"
	reg, err := release.OpenRegistry(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		dir := t.TempDir()
		files := map[string]string{
			"racker":               "#!/bin/sh\necho racker " + v + "\n",
			"racker-serve.service": "[Service]\n",
			"CHANGELOG.md":         changelogAt(v),
			"migrate.sh":           "#!/bin/sh\necho v2 > \"$1/plan-layout\"\n",
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		sv, migration := 1, ""
		if v == "2.0.0" {
			sv, migration = 2, "  - name: migrations\n    assets: [{path: migrate.sh, dest: migrations/2.sh, mode: \"0755\"}]\n"
		}
		conf := fmt.Sprintf("name: racker\nworkdir: .\nstate_version: %d\nchangelog: CHANGELOG.md\nmodules:\n"+
			"  - name: racker\n    assets: [{path: racker, dest: bin/racker, mode: \"0755\"}]\n"+
			"  - name: systemd\n    assets: [{path: racker-serve.service, dest: systemd/racker-serve.service}]\n%s", sv, migration)
		if err := os.WriteFile(filepath.Join(dir, "conf.yaml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := release.LoadManifest(filepath.Join(dir, "conf.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		_, key := signingKey(t)
		publish(t, reg, m, v, v, key)
	}
	return ref
}

func currentVersion(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "opt/racker/current", release.VersionFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func wantLines(t *testing.T, what, out string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
	for _, w := range notWant {
		if strings.Contains(out, w) {
			t.Errorf("%s: output has %q:\n%s", what, w, out)
		}
	}
}

// racker update against an in-process registry holding 1.0.0, 1.0.1, 1.0.2
// and 2.0.0 shows the changelog lines between the installed and the offered
// release before it switches: with the install lock held by someone else the
// update shows them and then fails, 1.0.0 still current; then it shows them
// and switches. version --check shows the same.
func TestUpdateShowsChangelogBeforeSwitching(t *testing.T) {
	ref := publishWithChangelogs(t, "1.0.0", "1.0.1", "1.0.2", "2.0.0")
	root := t.TempDir()
	if _, err := runRacker(t, "get", "1.0.0", "--registry", ref, "--root", root); err != nil {
		t.Fatal(err)
	}
	between := []string{
		"changes from 1.0.0 to 1.0.2:",
		"  ## [1.0.2] - 2026-12-12", "  - The 1.0.2 fix: leases survive a restart.",
		"  ## [1.0.1] - 2026-12-05", "  - The 1.0.1 fix: TFTP windowsize.",
	}
	outside := []string{"The first release.", "names nodes by hostname"}

	out, err := runRacker(t, "version", "--check", "--root", root)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "version --check", out, append(between, "update available: 1.0.2", "upgrade available: 2.0.0 (racker upgrade, a major version: it asks first)", "changes from 1.0.0 to 2.0.0:"), []string{"The first release."})

	// Someone else holds the install lock: the changes come first, then the
	// install fails, and nothing has switched.
	lock, err := os.OpenFile(filepath.Join(root, "opt/racker/.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	out, err = runRacker(t, "update", "--root", root)
	if err == nil || !strings.Contains(err.Error(), "another install is running") {
		t.Fatalf("update under a held lock: %v", err)
	}
	wantLines(t, "update (lock held)", out, between, outside)
	if v := currentVersion(t, root); v != "1.0.0" {
		t.Fatalf("current after a failed update: %s", v)
	}
	lock.Close()

	out, err = runRacker(t, "update", "--root", root)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "update", out, between, outside)
	if i, j := strings.Index(out, "changes from 1.0.0 to 1.0.2:"), strings.Index(out, "racker 1.0.2 installed (was 1.0.0"); i < 0 || j < i {
		t.Errorf("the changes are not shown before the switch:\n%s", out)
	}
	if v := currentVersion(t, root); v != "1.0.2" {
		t.Fatalf("current after update: %s", v)
	}
}

// racker upgrade across a major version lists the breaking changes and the
// state migration, and switches only when confirmed: --yes without a
// terminal, "y" on one.
func TestUpgradeAcrossAMajorVersionAsks(t *testing.T) {
	ref := publishWithChangelogs(t, "1.0.2", "2.0.0")
	root := t.TempDir()
	if _, err := runRacker(t, "get", "1.0.2", "--registry", ref, "--root", root); err != nil {
		t.Fatal(err)
	}
	stateVersion := func() string {
		b, _ := os.ReadFile(filepath.Join(root, "opt/racker-state", release.StateVersionFile))
		return strings.TrimSpace(string(b))
	}
	gate := []string{
		"changes from 1.0.2 to 2.0.0:",
		"racker 1.0.2 → 2.0.0 crosses a major version; breaking changes:",
		"  - [2.0.0] `racker plan -o json` names nodes by hostname.",
		"state migrations: the state in /opt/racker-state goes from version 1 to 2 (migrations/2.sh of 2.0.0); afterwards `racker rollback` to 1.0.2 is refused",
		"  - [2.0.0] plan.json is rewritten in the\n    version 2 layout.",
	}

	out, err := runRacker(t, "upgrade", "--root", root)
	if err == nil || !strings.Contains(err.Error(), "upgrade to 2.0.0 crosses a major version and migrates the state; not on a terminal, so pass --yes to confirm") {
		t.Fatalf("upgrade without a terminal or --yes: %v", err)
	}
	wantLines(t, "upgrade (refused)", out, gate, nil)
	if v := currentVersion(t, root); v != "1.0.2" || stateVersion() != "1" {
		t.Fatalf("a refused upgrade changed something: current %s, state version %s", v, stateVersion())
	}

	for _, tc := range []struct {
		answer, want string
	}{{"n\n", "1.0.2"}, {"\n", "1.0.2"}, {"y\n", "2.0.0"}} {
		var stdout, stderr bytes.Buffer
		env := &Env{Stdin: strings.NewReader(tc.answer), Stdout: &stdout, Stderr: &stderr, IsTerminal: func() bool { return true }}
		cmd := NewRoot(env)
		cmd.SetArgs([]string{"upgrade", "--root", root})
		err := cmd.Execute()
		wantLines(t, "upgrade on a terminal", stdout.String(), append(gate, "Upgrade to 2.0.0? [y/N] "), nil)
		if v := currentVersion(t, root); v != tc.want {
			t.Fatalf("answer %q: current %s, want %s (err %v)\n%s", tc.answer, v, tc.want, err, stdout.String())
		}
		if tc.want == "1.0.2" && (err == nil || !strings.Contains(err.Error(), "cancelled")) {
			t.Errorf("answer %q: %v, want cancelled", tc.answer, err)
		}
	}
	if stateVersion() != "2" {
		t.Errorf("state version after the upgrade: %s", stateVersion())
	}
	if _, err := os.Stat(filepath.Join(root, "opt/racker-state/plan-layout")); err != nil {
		t.Errorf("the migration did not run: %v", err)
	}
}

func TestCrossesMajor(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"1.0.0", "1.9.0", false}, {"1.4.2", "2.0.0", true}, {"0.3.1", "0.3.4", false}, {"0.3.1", "0.4.0", true}, {"0.9.0", "1.0.0", true},
	} {
		if got := crossesMajor(tc.from, tc.to); got != tc.want {
			t.Errorf("crossesMajor(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}
