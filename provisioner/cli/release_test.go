package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/release"
)

// buildRacker builds the real racker binary once for the release tests.
func buildRacker(t *testing.T) string {
	t.Helper()
	goBin := testenv.RequireCommand(t, "go")
	out := filepath.Join(t.TempDir(), "racker")
	cmd := exec.Command(goBin, "build", "-o", out, "../../cmd/racker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build racker: %v: %s", err, b)
	}
	return out
}

// releaseManifest mirrors release/conf.yaml, with the racker binary built
// above and local stand-ins for the iPXE files and the unit, so the test does
// not depend on files other packages provide.
func releaseManifest(t *testing.T, racker string) *release.Manifest {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "undionly.kpxe"), []byte("undionly"), 0o644)
	os.WriteFile(filepath.Join(dir, "racker-serve.service"), []byte("[Service]\nExecStart=/opt/bin/racker serve\n"), 0o644)
	conf := fmt.Sprintf(`name: racker
state_version: 1
modules:
  - name: racker
    assets: [{path: %q, dest: bin/racker, mode: "0755"}]
  - name: ipxe
    assets: [{path: undionly.kpxe, dest: share/ipxe/undionly.kpxe}]
  - name: systemd
    assets: [{path: racker-serve.service, dest: systemd/racker-serve.service}]
`, racker)
	f := filepath.Join(dir, "conf.yaml")
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := release.LoadManifest(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func runRacker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	t.Logf("racker %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	if code != 0 {
		return out.String(), fmt.Errorf("exit %d: %s", code, errb.String())
	}
	return out.String(), nil
}

// The user's path through the CLI against an in-process registry holding
// 1.0.0, 1.0.1, 1.1.0 and 2.0.0 (built by release.Build, as `make image`):
// get 1.0.0, update → 1.0.1, upgrade → 2.0.0, rollback → 1.0.1, with
// `racker version` (in-process and the installed binary itself) reporting it.
func TestReleaseCommands(t *testing.T) {
	racker := buildRacker(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/racker"
	reg, err := release.OpenRegistry(ref)
	if err != nil {
		t.Fatal(err)
	}
	_, key := signingKey(t)
	for _, v := range []string{"1.0.0", "1.0.1", "1.1.0", "2.0.0"} {
		publish(t, reg, releaseManifest(t, racker), v, v, key)
	}
	root := t.TempDir()
	step := func(want string, args ...string) string {
		t.Helper()
		out, err := runRacker(t, append(args, "--root", root)...)
		if err != nil {
			t.Fatal(err)
		}
		installed, err := os.ReadFile(filepath.Join(root, "opt/racker/current", release.VersionFile))
		if err != nil || strings.TrimSpace(string(installed)) != want {
			t.Fatalf("after racker %s: current is %q (%v), want %s", args[0], installed, err, want)
		}
		return out
	}

	if _, err := runRacker(t, "update", "--root", root, "--registry", ref); err == nil || !strings.Contains(err.Error(), "no Racker installed") {
		t.Fatalf("update with nothing installed: %v", err)
	}
	step("1.0.0", "get", "1.0.0", "--registry", ref)
	out, err := runRacker(t, "version", "--check", "--root", root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"installed: 1.0.0", "registry: " + ref, "update available: 1.0.1", "upgrade available: 2.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("racker version --check says\n%s\nwant %q", out, want)
		}
	}
	step("1.0.1", "update") // registry from the installed release
	if out := step("1.0.1", "update"); !strings.Contains(out, "up to date") {
		t.Errorf("a second update: %q", out)
	}
	step("2.0.0", "upgrade", "--yes") // a major version: without a terminal it needs --yes
	if out := step("1.0.1", "rollback"); !strings.Contains(out, "was 2.0.0") {
		t.Errorf("rollback says %q", out)
	}

	// The installed binary runs and reports the installed release.
	bin := filepath.Join(root, "opt/bin/racker")
	b, err := exec.Command(bin, "version", "--root", root).CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v: %s", bin, err, b)
	}
	if !strings.Contains(string(b), "installed: 1.0.1") || !strings.Contains(string(b), "previous: 2.0.0") {
		t.Fatalf("installed racker version says:\n%s", b)
	}

	t.Run("image archive", func(t *testing.T) { testReleaseImageArchive(t, racker) })

	// And the installed racker installs itself elsewhere, as in the image.
	other := t.TempDir()
	b, err = exec.Command(bin, "install", "--root", other).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "racker 1.0.1 installed") {
		t.Fatalf("installed racker install: %v: %s", err, b)
	}
}

// make image's path: racker release image → OCI archive → racker install
// --image, and racker release push to a loopback registry.
// buildArchive runs `racker release image` (as make image does) on a
// manifest holding racker, and returns the OCI archive.
func buildArchive(t *testing.T, racker, version string) string {
	return buildArchiveState(t, racker, version, 1, "")
}

// buildArchiveState is buildArchive for a release with state version sv
// whose migrations/SV.sh is migration (none when empty).
func buildArchiveState(t *testing.T, racker, version string, sv int, migration string) string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.yaml")
	os.WriteFile(filepath.Join(dir, "undionly.kpxe"), []byte("undionly"), 0o644)
	os.WriteFile(filepath.Join(dir, "racker-serve.service"), []byte("[Service]\n"), 0o644)
	extra := ""
	if migration != "" {
		os.WriteFile(filepath.Join(dir, "migration.sh"), []byte(migration), 0o755)
		extra = fmt.Sprintf("  - name: migrations\n    assets: [{path: migration.sh, dest: migrations/%d.sh, mode: \"0755\"}]\n", sv)
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(`name: racker
state_version: %d
modules:
  - name: racker
    assets: [{path: %q, dest: bin/racker, mode: "0755"}]
  - name: systemd
    assets: [{path: racker-serve.service, dest: systemd/racker-serve.service}]
%s`, sv, racker, extra)), 0o644)
	archive := filepath.Join(dir, "racker.oci.tar")
	key, _ := signingKey(t)
	if _, err := runRacker(t, "release", "image", "--manifest", conf, "--version", version, "--out", archive, "--sign-key", key); err != nil {
		t.Fatal(err)
	}
	return archive
}

func testReleaseImageArchive(t *testing.T, racker string) {
	archive := buildArchive(t, racker, "v3.1.4-2-gabcdef")
	root := t.TempDir()
	if _, err := runRacker(t, "install", "--image", archive, "--root", root); err != nil {
		t.Fatal(err)
	}
	out, err := runRacker(t, "version", "--root", root)
	if err != nil || !strings.Contains(out, "installed: 3.1.4-2-gabcdef") {
		t.Fatalf("version after install --image: %v\n%s", err, out)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/racker"
	if _, err := runRacker(t, "release", "push", archive, "--registry", ref); err != nil {
		t.Fatal(err)
	}
	root2 := t.TempDir()
	if _, err := runRacker(t, "get", "3.1.4-2-gabcdef", "--registry", ref, "--root", root2); err != nil {
		t.Fatal(err)
	}
}

func TestSemverFromDescribe(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3": "1.2.3", "v1.2.3-4-gabc": "1.2.3-4-gabc",
		"0e2583a": "0.0.0-0e2583a", "0e2583a-dirty": "0.0.0-0e2583a-dirty", "": "0.0.0-dev",
	} {
		if got := SemverFromDescribe(in); got != want {
			t.Errorf("SemverFromDescribe(%q) = %q, want %q", in, got, want)
		}
	}
}
