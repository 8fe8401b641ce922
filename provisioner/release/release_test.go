package release

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/racker/racker/internal/testenv"
)

var lifecycle = []testRelease{
	{version: "1.0.0"}, {version: "1.0.1"}, {version: "1.1.0"}, {version: "2.0.0"},
}

func runOutput(bin string) (string, error) {
	out, err := exec.Command(bin).Output()
	return strings.TrimSpace(string(out)), err
}

// From 1.0.0: update → 1.0.1, upgrade → 2.0.0, rollback → 1.0.1, against
// an in-process registry holding 1.0.0, 1.0.1, 1.1.0 and 2.0.0.
func TestUpdateUpgradeRollback(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t, lifecycle...)
	r, err := OpenRegistry(reg.ref)
	must(t, err)
	tags, err := r.Versions(context.Background())
	must(t, err)
	if !slices.Equal(tags, []string{"1.0.0", "1.0.1", "1.1.0", "2.0.0"}) {
		t.Fatalf("registry lists %v", tags)
	}

	in := testInstaller(t, t.TempDir())
	svc := &fakeServices{available: true, active: map[string]bool{"racker-serve.service": true}}
	in.Services = svc
	_, err = installFrom(t, in, reg.ref, "1.0.0", Options{Migrate: true})
	must(t, err)
	assertCurrent(t, in, "1.0.0")

	pick := func(p Policy) string {
		cur, err := in.Current()
		must(t, err)
		v, err := Pick(tags, cur.Version, p)
		must(t, err)
		return v
	}
	if v := pick(SameMinor); v != "1.0.1" {
		t.Fatalf("update from 1.0.0 picks %q, want 1.0.1", v)
	}
	res, err := installFrom(t, in, reg.ref, "1.0.1", Options{})
	must(t, err)
	assertCurrent(t, in, "1.0.1")
	if res.From != "1.0.0" || !res.Changed {
		t.Fatalf("update result %+v", res)
	}
	if !slices.Contains(res.Restarted, "racker-serve.service") {
		t.Fatalf("the running racker-serve unit was not restarted: %v", svc.calls)
	}

	if v := pick(Newest); v != "2.0.0" {
		t.Fatalf("upgrade from 1.0.1 picks %q, want 2.0.0", v)
	}
	_, err = installFrom(t, in, reg.ref, "2.0.0", Options{Migrate: true})
	must(t, err)
	assertCurrent(t, in, "2.0.0")
	if v := pick(SameMinor); v != "2.0.0" {
		t.Fatalf("update from 2.0.0 picks %q, want 2.0.0 (up to date)", v)
	}

	res, err = in.Rollback(context.Background())
	must(t, err)
	assertCurrent(t, in, "1.0.1")
	if res.From != "2.0.0" || res.To != "1.0.1" {
		t.Fatalf("rollback result %+v", res)
	}
	// A second rollback undoes the first.
	_, err = in.Rollback(context.Background())
	must(t, err)
	assertCurrent(t, in, "2.0.0")

	// The unit file is the release's, and the previous version is kept.
	unit, err := os.ReadFile(filepath.Join(in.Layout.Root, "etc/systemd/system/racker-serve.service"))
	must(t, err)
	if !strings.Contains(string(unit), "ExecStart=/opt/bin/racker serve") {
		t.Fatalf("unit file: %q", unit)
	}
	if _, err := Verify(in.Layout.VersionDir("1.0.1")); err != nil {
		t.Fatalf("previous version not kept intact: %v", err)
	}

	// A fourth version: three are kept (current, previous, one more), the
	// oldest goes.
	_, err = installFrom(t, in, reg.ref, "1.1.0", Options{})
	must(t, err)
	assertCurrent(t, in, "1.1.0")
	entries, err := os.ReadDir(in.Layout.versions())
	must(t, err)
	var kept []string
	for _, e := range entries {
		kept = append(kept, e.Name())
	}
	if !slices.Equal(kept, []string{"1.0.1", "1.1.0", "2.0.0"}) {
		t.Fatalf("versions kept: %v, want 1.0.1 1.1.0 2.0.0", kept)
	}
	if prev, err := in.Previous(); err != nil || prev.Version != "2.0.0" {
		t.Fatalf("previous after installing 1.1.0: %v %v", prev, err)
	}

	// Two installs at once: the second is refused, not interleaved.
	unlock, err := in.lock()
	must(t, err)
	_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
	unlock()
	if err == nil || !strings.Contains(err.Error(), "another install is running") {
		t.Fatalf("a concurrent install: %v", err)
	}
	assertCurrent(t, in, "1.1.0")
}

// The installed tree holds exactly what the image holds under /racker,
// byte for byte and mode for mode.
func TestInstalledTreeMatchesImage(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := reg.publish(t, testRelease{version: "1.0.0"})
	in := testInstaller(t, t.TempDir())
	_, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
	must(t, err)

	want := map[string]string{} // path → mode:sha256
	tr := tar.NewReader(mutate.Extract(imgs["1.0.0"]))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		rel, ok := strings.CutPrefix(hdr.Name, ImageRoot+"/")
		if !ok || hdr.Typeflag != tar.TypeReg {
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, tr)
		must(t, err)
		want[rel] = os.FileMode(hdr.Mode).Perm().String() + ":" + hex.EncodeToString(h.Sum(nil))
	}
	got := map[string]string{}
	dir := in.Layout.VersionDir("1.0.0")
	must(t, filepath.Walk(dir, func(p string, st os.FileInfo, err error) error {
		if err != nil || st.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == FilesFile {
			return nil
		}
		sum, err := fileSHA256(p)
		got[rel] = st.Mode().Perm().String() + ":" + sum
		return err
	}))
	if len(want) < 4 {
		t.Fatalf("image holds only %v", want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: installed %q, image %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: installed but not in the image", k)
		}
	}
}

// A blob corrupted on the wire is refused, and 1.0.0 stays current.
func TestCorruptedBlobRefused(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := reg.publish(t, testRelease{version: "1.0.0"}, testRelease{version: "1.0.1"})
	in := testInstaller(t, t.TempDir())
	_, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
	must(t, err)

	// Corrupt the layer that differs between the versions (bin/racker).
	layers, err := imgs["1.0.1"].Layers()
	must(t, err)
	d, err := layers[0].Digest()
	must(t, err)
	reg.corrupt.Store(d.Hex)
	_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
	if err == nil {
		t.Fatal("a corrupted layer was installed")
	}
	t.Logf("refused as expected: %v", err)
	if !strings.Contains(err.Error(), d.Hex[:12]) && !strings.Contains(err.Error(), "digest") {
		t.Errorf("the error does not name the bad blob or digest: %v", err)
	}
	assertCurrent(t, in, "1.0.0")
	if _, err := os.Stat(in.Layout.VersionDir("1.0.1")); !os.IsNotExist(err) {
		t.Fatalf("versions/1.0.1 exists after a refused install: %v", err)
	}

	// Once the registry serves good bytes again, the install succeeds,
	// showing its progress (as on a terminal).
	reg.corrupt.Store("")
	var meter strings.Builder
	in.Progress = &meter
	_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
	must(t, err)
	assertCurrent(t, in, "1.0.1")
	if !strings.Contains(meter.String(), "downloading") || !strings.HasSuffix(meter.String(), "MiB\n") {
		t.Errorf("progress output %q", meter.String())
	}
}

// A failure injected at each step leaves the old version current and
// working (before the switch) or the new one whole (after it); a retry then
// completes the install.
func TestInterruptedInstallKeepsAWorkingVersion(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0"}, testRelease{version: "1.0.1"})
	boom := errors.New("injected failure")
	for _, step := range allSteps {
		t.Run(string(step), func(t *testing.T) {
			in := testInstaller(t, t.TempDir())
			_, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
			must(t, err)
			in.hook = func(s Step) error {
				if s == step {
					return boom
				}
				return nil
			}
			_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
			if !errors.Is(err, boom) {
				t.Fatalf("install with a failure at %s: %v", step, err)
			}
			want := "1.0.0"
			if switchedBy(step) {
				want = "1.0.1"
			}
			cur, err := in.Current()
			must(t, err)
			if cur.Version != want {
				t.Fatalf("after a failure at %s current is %s, want %s", step, cur.Version, want)
			}
			if _, err := Verify(in.Layout.CurrentLink()); err != nil {
				t.Fatalf("after a failure at %s current is damaged: %v", step, err)
			}
			in.hook = nil
			_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
			must(t, err)
			assertCurrent(t, in, "1.0.1")
			assertNoLeftovers(t, in)
		})
	}
}

var allSteps = []Step{StepDownload, StepExtract, StepExtractMid, StepStaged, StepMigrate, StepSwitch, StepLink, StepUnits}

// switchedBy says whether current has moved when step is reached.
func switchedBy(s Step) bool { return s == StepLink || s == StepUnits }

func assertNoLeftovers(t *testing.T, in *Installer) {
	t.Helper()
	entries, err := os.ReadDir(in.Layout.versions())
	must(t, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover staging folder %s", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(in.Layout.Root, "opt/racker/cache")); !os.IsNotExist(err) {
		t.Errorf("download cache left behind: %v", err)
	}
}

// Upgrade runs state migrations; update refuses a release that needs them;
// a release that cannot migrate the state on disk is refused, as is a
// rollback to a release that cannot read the migrated state.
func TestStateMigrations(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t,
		testRelease{version: "1.0.0"},
		testRelease{version: "1.0.2", stateVersion: 2, migrations: map[int]string{2: "touch \"$1/migrated-to-2\"\n"}},
		testRelease{version: "3.0.0", stateVersion: 2, migrations: map[int]string{2: "touch \"$1/migrated-to-2\"\n"}},
		testRelease{version: "4.0.0", stateVersion: 4, migrations: map[int]string{4: "true\n"}},
	)
	in := testInstaller(t, t.TempDir())
	_, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
	must(t, err)
	stateDir := filepath.Join(in.Layout.Root, "opt/racker-state")
	if v, err := StateVersion(stateDir); err != nil || v != 1 {
		t.Fatalf("fresh install: state version %d, %v; want 1", v, err)
	}

	if _, err := installFrom(t, in, reg.ref, "1.0.2", Options{}); err == nil || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("update to a release that needs a state migration: %v", err)
	}
	assertCurrent(t, in, "1.0.0")

	if _, err := installFrom(t, in, reg.ref, "4.0.0", Options{Migrate: true}); err == nil || !strings.Contains(err.Error(), "migrates state from version 3") {
		t.Fatalf("upgrade to a release that cannot migrate state 1: %v", err)
	}
	assertCurrent(t, in, "1.0.0")

	_, err = installFrom(t, in, reg.ref, "3.0.0", Options{Migrate: true})
	must(t, err)
	assertCurrent(t, in, "3.0.0")
	if v, _ := StateVersion(stateDir); v != 2 {
		t.Fatalf("after the upgrade the state version is %d, want 2", v)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "migrated-to-2")); err != nil {
		t.Fatalf("migration 2 did not run: %v", err)
	}
	if _, err := in.Rollback(context.Background()); err == nil || !strings.Contains(err.Error(), "state version 2") {
		t.Fatalf("rollback to a release that reads state 1 after migrating to 2: %v", err)
	}
	assertCurrent(t, in, "3.0.0")
}

// Systemd units: without systemd the install says so and restarts nothing;
// with it, only running units are restarted, and only changed units reload.
func TestUnitsWithoutSystemd(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0"})
	in := testInstaller(t, t.TempDir())
	svc := &fakeServices{available: false}
	in.Services = svc
	res, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
	must(t, err)
	if len(svc.calls) != 0 || len(res.Restarted) != 0 {
		t.Fatalf("systemd calls on a host without systemd: %v", svc.calls)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "no systemd on this host") }) {
		t.Fatalf("no note about the missing systemd: %v", res.Notes)
	}
	if _, err := os.Stat(filepath.Join(in.Layout.Root, "etc/systemd/system/racker-serve.service")); err != nil {
		t.Fatalf("unit not written: %v", err)
	}
}

// The image survives the OCI archive (make image → docker load / racker
// install --image) unchanged, and installs from it.
func TestOCIArchiveRoundTrip(t *testing.T) {
	img := buildTestImage(t, testRelease{version: "1.2.3"}, "")
	out := filepath.Join(t.TempDir(), "racker-1.2.3.oci.tar")
	must(t, WriteOCIArchive(img, "example.org/racker", "1.2.3", out))
	back, closeFn, err := OpenOCIArchive(out)
	must(t, err)
	defer closeFn()
	d1, err := img.Digest()
	must(t, err)
	d2, err := back.Digest()
	must(t, err)
	if d1 != d2 {
		t.Fatalf("digest %s after the archive, %s before", d2, d1)
	}
	if err := validate.Image(back); err != nil {
		t.Fatalf("the archived image is not a valid OCI image: %v", err)
	}
	cfg, err := back.ConfigFile()
	must(t, err)
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/racker/bin/racker"}) || !slices.Equal(cfg.Config.Cmd, []string{"install"}) {
		t.Fatalf("default command %v %v, want racker install", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	in := testInstaller(t, t.TempDir())
	_, err = in.Install(context.Background(), Source{Image: back, Digest: d2.String()}, Options{})
	must(t, err)
	assertCurrent(t, in, "1.2.3")

	// containers/image (podman's library, through skopeo) reads the archive
	// both as an OCI archive and as a `docker save` archive.
	skopeo := testenv.RequireCommand(t, "skopeo")
	for _, transport := range []string{"oci-archive:", "docker-archive:"} {
		out, err := exec.Command(skopeo, "inspect", transport+out).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v: %s", transport, err, out)
		}
		if !strings.Contains(string(out), `"org.opencontainers.image.version": "1.2.3"`) {
			t.Fatalf("skopeo inspect %s: %s", transport, out)
		}
	}
}

// Installing from an unpacked payload folder (the container's /racker).
func TestInstallFromPayloadDir(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0"})
	a := testInstaller(t, t.TempDir())
	_, err := installFrom(t, a, reg.ref, "1.0.0", Options{})
	must(t, err)
	b := testInstaller(t, t.TempDir())
	_, err = b.Install(context.Background(), Source{Dir: a.Layout.CurrentLink()}, Options{})
	must(t, err)
	assertCurrent(t, b, "1.0.0")

	// Another payload under the same version replaces the installed copy
	// (swapped in whole), rather than being taken for it.
	must(t, os.WriteFile(filepath.Join(a.Layout.CurrentLink(), "share/ipxe/undionly.kpxe"), []byte("rebuilt"), 0o644))
	_, err = b.Install(context.Background(), Source{Dir: a.Layout.CurrentLink()}, Options{})
	must(t, err)
	assertCurrent(t, b, "1.0.0")
	got, err := os.ReadFile(filepath.Join(b.Layout.CurrentLink(), "share/ipxe/undionly.kpxe"))
	must(t, err)
	if string(got) != "rebuilt" {
		t.Fatalf("same version, new payload: installed file says %q", got)
	}
	assertNoLeftovers(t, b)
}
