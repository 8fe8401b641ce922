package release

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testRelease says how to build one release for the tests.
type testRelease struct {
	version      string
	stateVersion int
	migrations   map[int]string // N → body of migrations/N.sh
	changelog    string         // CHANGELOG.md beside the manifest, when set
	// tools are optional modules, one per name (lokoctl, terraform), each
	// a build step making bin/NAME: a script that prints the given line,
	// as `lokoctl version` and `terraform version` would.
	tools map[string]string
	unit  string // racker-serve.service, when not the default
}

// writeTestManifest writes a manifest in the same shape as release/conf.yaml:
// a build step that makes bin/racker (a script that prints its version), a
// local asset module (the "iPXE" files) and a systemd unit; the racker
// module's output depends on the version, the others do not.
func writeTestManifest(t *testing.T, r testRelease) *Manifest {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "undionly.kpxe"), []byte("fake undionly"), 0o644))
	unit := r.unit
	if unit == "" {
		unit = "[Service]\nExecStart=/opt/bin/racker serve\n"
	}
	must(t, os.WriteFile(filepath.Join(dir, "racker-serve.service"), []byte(unit), 0o644))
	sv := r.stateVersion
	if sv == 0 {
		sv = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: racker\nworkdir: .\nstate_version: %d\n", sv)
	if r.changelog != "" {
		must(t, os.WriteFile(filepath.Join(dir, "CHANGELOG.md"), []byte(r.changelog), 0o644))
		b.WriteString("changelog: CHANGELOG.md\n")
	}
	b.WriteString("modules:\n")
	b.WriteString(`  - name: racker
    build:
      - run: [sh, -c, 'mkdir -p "$P/bin" && printf "#!/bin/sh\necho racker %s\n" "$V" > "$P/bin/racker" && chmod 755 "$P/bin/racker"']
        env: {P: "${PAYLOAD}", V: "${VERSION}"}
  - name: ipxe
    assets:
      - {path: undionly.kpxe, dest: share/ipxe/undionly.kpxe}
  - name: systemd
    assets:
      - {path: racker-serve.service, dest: systemd/racker-serve.service}
`)
	for name, says := range r.tools {
		fmt.Fprintf(&b, `  - name: %s
    optional: true
    build:
      - run: [sh, -c, 'mkdir -p "$P/bin" && printf "#!/bin/sh\necho %%s\n" "$S" > "$P/bin/%s" && chmod 755 "$P/bin/%s"']
        env: {P: "${PAYLOAD}", S: %q}
`, name, name, name, says)
	}
	if len(r.migrations) > 0 {
		b.WriteString("  - name: migrations\n    assets:\n")
		for n, body := range r.migrations {
			f := fmt.Sprintf("m%d.sh", n)
			must(t, os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644))
			fmt.Fprintf(&b, "      - {path: %s, dest: migrations/%d.sh, mode: \"0755\"}\n", f, n)
		}
	}
	file := filepath.Join(dir, "conf.yaml")
	must(t, os.WriteFile(file, []byte(b.String()), 0o644))
	m, err := LoadManifest(file)
	must(t, err)
	return m
}

// buildTestImage builds a release with the same Build as `make image`.
func buildTestImage(t *testing.T, r testRelease, registryRef string) v1.Image {
	t.Helper()
	m := writeTestManifest(t, r)
	var enable []string
	for name := range r.tools {
		enable = append(enable, name)
	}
	img, info, err := Build(context.Background(), BuildOptions{Manifest: m, Version: r.version, Registry: registryRef, Enable: enable, CacheDir: t.TempDir()}, t.TempDir())
	must(t, err)
	if info.Version != r.version {
		t.Fatalf("built info says %s, want %s", info.Version, r.version)
	}
	return img
}

// testRegistry is an in-process OCI registry on loopback. corrupt, when
// set, flips one byte in the body of every blob download whose digest it
// names, like a bad disk or proxy would.
type testRegistry struct {
	srv     *httptest.Server
	ref     string
	corrupt atomic.Value // string: digest hex to corrupt
	blobGet atomic.Int64
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	tr.corrupt.Store("")
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.blobGet.Add(1)
			if bad := tr.corrupt.Load().(string); bad != "" && strings.HasSuffix(r.URL.Path, bad) {
				reg.ServeHTTP(&flipWriter{ResponseWriter: w}, r)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.ref = strings.TrimPrefix(tr.srv.URL, "http://") + "/racker"
	return tr
}

// flipWriter changes the first byte of the body it passes on.
type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		c := append([]byte(nil), b...)
		c[len(c)/2] ^= 0xff
		f.done = true
		return f.ResponseWriter.Write(c)
	}
	return f.ResponseWriter.Write(b)
}

// publish builds and pushes releases to the test registry.
func (tr *testRegistry) publish(t *testing.T, rs ...testRelease) map[string]v1.Image {
	t.Helper()
	reg, err := OpenRegistry(tr.ref)
	must(t, err)
	out := map[string]v1.Image{}
	for _, r := range rs {
		img := buildTestImage(t, r, tr.ref)
		must(t, reg.Push(context.Background(), img, r.version))
		out[r.version] = img
	}
	return out
}

// fakeServices is a unit-test fake of systemd: it keeps which units are
// enabled and active, as systemctl would change them, and records calls.
type fakeServices struct {
	available bool
	active    map[string]bool
	enabled   map[string]bool
	calls     []string
}

func (f *fakeServices) Available() bool { return f.available }
func (f *fakeServices) Reload(context.Context) error {
	f.calls = append(f.calls, "daemon-reload")
	return nil
}
func (f *fakeServices) IsActive(_ context.Context, u string) (bool, error)  { return f.active[u], nil }
func (f *fakeServices) IsEnabled(_ context.Context, u string) (bool, error) { return f.enabled[u], nil }
func (f *fakeServices) Enable(_ context.Context, u string) error {
	f.calls = append(f.calls, "enable "+u)
	f.set(&f.enabled, u)
	return nil
}
func (f *fakeServices) Start(_ context.Context, u string) error {
	f.calls = append(f.calls, "start "+u)
	f.set(&f.active, u)
	return nil
}
func (f *fakeServices) Restart(_ context.Context, u string) error {
	f.calls = append(f.calls, "restart "+u)
	f.set(&f.active, u)
	return nil
}
func (f *fakeServices) set(m *map[string]bool, u string) {
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[u] = true
}

func testInstaller(t *testing.T, root string) *Installer {
	return &Installer{
		Layout: DefaultLayout(root, "/opt/racker", "/opt/racker-state"),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// installFrom installs version from the registry with the given options.
func installFrom(t *testing.T, in *Installer, ref, version string, opts Options) (*Result, error) {
	t.Helper()
	reg, err := OpenRegistry(ref)
	must(t, err)
	img, digest, err := reg.Image(context.Background(), version)
	if err != nil {
		return nil, err
	}
	return in.Install(context.Background(), Source{Image: img, Digest: digest.String()}, opts)
}

// assertCurrent checks that current is version, intact, and that the linked
// racker executable runs and prints that version.
func assertCurrent(t *testing.T, in *Installer, version string) {
	t.Helper()
	cur, err := in.Current()
	if err != nil {
		t.Fatalf("no current version: %v", err)
	}
	if cur.Version != version {
		t.Fatalf("current is %s, want %s", cur.Version, version)
	}
	if _, err := Verify(in.Layout.CurrentLink()); err != nil {
		t.Fatalf("current %s is not intact: %v", version, err)
	}
	bin := filepath.Join(in.Layout.Root, "opt/bin/racker")
	out, err := runOutput(bin)
	if err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	if want := "racker " + version; out != want {
		t.Fatalf("%s prints %q, want %q", bin, out, want)
	}
}
