package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// The real manifest parses and names the payload the issue asks for.
func TestRepositoryManifest(t *testing.T) {
	m, err := LoadManifest("../../release/conf.yaml")
	must(t, err)
	mods, err := m.modules(nil)
	must(t, err)
	var names []string
	for _, mod := range mods {
		names = append(names, mod.Name)
	}
	if got := strings.Join(names, ","); got != "racker,docs,ipxe,systemd" {
		t.Fatalf("default modules %s, want racker,docs,ipxe,systemd", got)
	}
	opt, err := m.modules([]string{"terraform", "lokoctl"})
	if err != nil {
		t.Fatal(err)
	}
	// lokoctl and terraform are built from pinned Go sources, never
	// downloaded: no optional module may carry a URL asset.
	for _, mod := range opt {
		for _, a := range mod.Assets {
			if a.URL != "" {
				t.Errorf("module %s downloads %s; build it from source instead", mod.Name, a.URL)
			}
		}
	}
	if _, err := m.modules([]string{"kubectl"}); err == nil {
		t.Error("kubectl (a download whose checksum was never checked) is back in the manifest")
	}
	if _, err := m.modules([]string{"helm"}); err == nil {
		t.Fatal("an unknown optional module was accepted")
	}
}

// optionalToolManifest declares a racker module plus an optional tool
// downloaded from url (a zip with member "tool"), pinned by sum.
func optionalToolManifest(t *testing.T, url, sum string) *Manifest {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "racker"), []byte("#!/bin/sh\n"), 0o755))
	conf := `name: racker
workdir: .
state_version: 1
modules:
  - name: racker
    assets:
      - {path: racker, dest: bin/racker, mode: "0755"}
  - name: tool
    optional: true
    assets:
      - {url: "` + url + `", sha256: "` + sum + `", extract: tool, dest: bin/tool, mode: "0755"}
`
	file := filepath.Join(dir, "conf.yaml")
	must(t, os.WriteFile(file, []byte(conf), 0o644))
	m, err := LoadManifest(file)
	must(t, err)
	return m
}

// Optional modules come from pinned URLs (here an httptest server on
// loopback), are downloaded once into the cache, and a checksum mismatch
// stops the build.
func TestBuildDownloadsPinnedAssetsOnce(t *testing.T) {
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("tool")
	w.Write([]byte("#!/bin/sh\necho tool\n"))
	zw.Close()
	payload := zbuf.Bytes()
	sum := sha256.Sum256(payload)
	good := hex.EncodeToString(sum[:])
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(payload)
	}))
	defer srv.Close()
	cache := t.TempDir()
	build := func(m *Manifest, enable ...string) (*Info, error) {
		_, info, err := Build(context.Background(), BuildOptions{Manifest: m, Version: "1.0.0", Enable: enable, CacheDir: cache}, t.TempDir())
		return info, err
	}

	m := optionalToolManifest(t, srv.URL+"/tool.zip", good)
	info, err := build(m)
	must(t, err)
	if strings.Join(info.Modules, ",") != "racker" || hits.Load() != 0 {
		t.Fatalf("optional module built without being enabled: %v, %d downloads", info.Modules, hits.Load())
	}
	for i := 0; i < 2; i++ {
		info, err = build(m, "tool")
		must(t, err)
	}
	if strings.Join(info.Modules, ",") != "racker,tool" {
		t.Fatalf("modules %v", info.Modules)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads for two builds, want 1 (cached)", hits.Load())
	}

	bad := strings.Repeat("0", 64)
	_, err = build(optionalToolManifest(t, srv.URL+"/tool.zip", bad), "tool")
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("a checksum mismatch did not stop the build: %v", err)
	}
	_, err = build(optionalToolManifest(t, srv.URL+"/tool.zip", ""), "tool")
	if err == nil || !strings.Contains(err.Error(), "no sha256") {
		t.Fatalf("an unpinned download was accepted: %v", err)
	}
}

// A missing local asset (e.g. the unit file not written yet) fails the
// build, naming the file.
func TestBuildMissingAssetFailsClearly(t *testing.T) {
	dir := t.TempDir()
	conf := "name: racker\nstate_version: 1\nmodules:\n  - name: systemd\n    assets:\n      - {path: dist/systemd/racker-serve.service, dest: systemd/racker-serve.service}\n"
	file := filepath.Join(dir, "conf.yaml")
	must(t, os.WriteFile(file, []byte(conf), 0o644))
	m, err := LoadManifest(file)
	must(t, err)
	_, _, err = Build(context.Background(), BuildOptions{Manifest: m, Version: "1.0.0"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "racker-serve.service") {
		t.Fatalf("missing asset: %v", err)
	}
}

func TestManifestRejectsEscapingPaths(t *testing.T) {
	for _, dest := range []string{"../etc/passwd", "/bin/x", "a/../../b", ""} {
		a := Asset{Path: "x", Dest: dest}
		if a.check() == nil {
			t.Errorf("dest %q accepted", dest)
		}
	}
}

func TestPick(t *testing.T) {
	tags := []string{"latest", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "2.1.0-rc.1", "v1.0.3", "1.0"}
	cases := []struct {
		installed string
		p         Policy
		want      string
	}{
		{"1.0.0", SameMinor, "v1.0.3"},
		{"1.0.0", Newest, "2.0.0"},
		{"1.1.0", SameMinor, "1.1.0"},
		{"3.0.0", SameMinor, ""},
		{"2.0.0", Newest, "2.0.0"},
	}
	for _, c := range cases {
		got, err := Pick(tags, c.installed, c.p)
		must(t, err)
		if got != c.want {
			t.Errorf("Pick(%s, %d) = %q, want %q", c.installed, c.p, got, c.want)
		}
	}
}

// Registries off loopback are spoken to over HTTPS only: a plain-HTTP
// request is refused before any connection is made.
func TestRegistrySchemes(t *testing.T) {
	for _, ref := range []string{"127.0.0.1:5000/racker", "localhost:5000/racker", "[::1]:5000/racker"} {
		r, err := OpenRegistry(ref)
		must(t, err)
		if r.repo.Scheme() != "http" {
			t.Errorf("%s: scheme %s, want http", ref, r.repo.Scheme())
		}
	}
	r, err := OpenRegistry("10.0.0.5:5000/racker")
	must(t, err)
	tr := httpsOnly{next: failTransport{t}, allowHTTP: false}
	req, _ := http.NewRequest(http.MethodGet, "http://10.0.0.5:5000/v2/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "HTTPS only") {
		t.Fatalf("plain HTTP to %s: %v", r, err)
	}
	for _, bad := range []string{"", "https://x/y", "host-only", "r.example/racker:1.0.0@sha256:00"} {
		if _, err := OpenRegistry(bad); err == nil {
			t.Errorf("registry %q accepted", bad)
		}
	}
}

type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.t.Fatal("a request went out")
	return nil, nil
}

// Release tarballs (lokoctl's) are .tar.gz: the named member is taken out;
// a missing member fails the build.
func TestExtractMemberFromTarGz(t *testing.T) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	body := []byte("#!/bin/sh\necho lokoctl\n")
	tw.WriteHeader(&tar.Header{Name: "lokoctl_v0.9.0_linux_amd64/lokoctl", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	gz.Close()
	f := filepath.Join(t.TempDir(), "lokoctl.tar.gz")
	must(t, os.WriteFile(f, buf.Bytes(), 0o644))
	in, err := os.Open(f)
	must(t, err)
	defer in.Close()
	r, err := extractMember(in, "lokoctl_v0.9.0_linux_amd64/lokoctl")
	must(t, err)
	got, err := io.ReadAll(r)
	must(t, err)
	if !bytes.Equal(got, body) {
		t.Fatalf("extracted %q", got)
	}
	in.Seek(0, io.SeekStart)
	if _, err := extractMember(in, "lokoctl"); err == nil || !strings.Contains(err.Error(), "no member") {
		t.Fatalf("missing member: %v", err)
	}
}
