package release

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/release/changelog"
)

const testChangelog = `# Changelog

## [Unreleased]

### Added
- Something for later.

## [1.0.1] - 2026-12-05

### Fixed
- The 1.0.1 fix.

## [1.0.0] - 2026-12-01

### Added
- The first release.
`

// A release built with a changelog carries its own section as a label and
// the whole file in its release layer, which is all a client downloads to
// read it; the installed version has it too.
func TestReleaseCarriesChangelog(t *testing.T) {
	tr := newTestRegistry(t)
	tr.publish(t, testRelease{version: "1.0.1", changelog: testChangelog})
	reg, err := OpenRegistry(tr.ref)
	must(t, err)
	img, digest, err := reg.Image(context.Background(), "1.0.1")
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	if got := cfg.Config.Labels[ChangesLabel]; got != "## [1.0.1] - 2026-12-05\n\n### Fixed\n- The 1.0.1 fix.\n" {
		t.Errorf("label %s = %q", ChangesLabel, got)
	}

	before := tr.blobGet.Load()
	log, err := ImageChangelog(img)
	must(t, err)
	if n := tr.blobGet.Load() - before; n != 1 {
		t.Errorf("reading the changelog fetched %d blobs, want 1 (the release layer)", n)
	}
	secs, err := log.Between("1.0.0", "1.0.1")
	if err != nil || len(secs) != 1 || secs[0].Groups[0].Entries[0].Text != "The 1.0.1 fix." {
		t.Fatalf("changes 1.0.0 → 1.0.1 from the image: %+v, %v", secs, err)
	}

	in := testInstaller(t, t.TempDir())
	_, err = in.Install(context.Background(), Source{Image: img, Digest: digest.String()}, Options{})
	must(t, err)
	got, err := os.ReadFile(filepath.Join(in.Layout.CurrentLink(), ChangelogFile))
	if err != nil || string(got) != testChangelog {
		t.Errorf("installed %s: %v\n%s", ChangelogFile, err, got)
	}
	if _, err := Verify(in.Layout.CurrentLink()); err != nil {
		t.Errorf("the installed version with its changelog fails its own check: %v", err)
	}
}

func TestBuildChangelogRules(t *testing.T) {
	build := func(version, log string) (string, error) {
		t.Helper()
		m := writeTestManifest(t, testRelease{version: version, changelog: log})
		img, _, err := Build(context.Background(), BuildOptions{Manifest: m, Version: version}, t.TempDir())
		if err != nil {
			return "", err
		}
		cfg, err := img.ConfigFile()
		must(t, err)
		return cfg.Config.Labels[ChangesLabel], nil
	}
	// A build between releases carries the unreleased notes.
	label, err := build("0.0.0-abc123", testChangelog)
	must(t, err)
	if !strings.HasPrefix(label, "## [Unreleased]\n") || !strings.Contains(label, "Something for later.") {
		t.Errorf("pre-release label %q", label)
	}
	// A release needs its own section.
	if _, err := build("1.0.2", testChangelog); err == nil || !strings.Contains(err.Error(), "has no section for release 1.0.2: move the [Unreleased] entries under \"## [1.0.2] - ") {
		t.Errorf("release without a section: %v", err)
	}
	// A malformed changelog stops the build, naming the line.
	if _, err := build("1.0.0", "## [1.0.0] - 2026-12-01\n### Improved\n- x\n"); err == nil || !strings.Contains(err.Error(), "CHANGELOG.md:2: group \"Improved\"") {
		t.Errorf("malformed changelog: %v", err)
	}
	// A module may not ship its own CHANGELOG.md in the payload root.
	m := writeTestManifest(t, testRelease{version: "1.0.0"})
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "c.md"), []byte("x"), 0o644))
	m.Modules = append(m.Modules, Module{Name: "docs", Assets: []Asset{{Path: filepath.Join(dir, "c.md"), Dest: ChangelogFile}}})
	if _, _, err := Build(context.Background(), BuildOptions{Manifest: m, Version: "1.0.0"}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "CHANGELOG.md is written by the build itself") {
		t.Errorf("a module's CHANGELOG.md: %v", err)
	}
	// Without a changelog nothing is carried, and readers get nil.
	m = writeTestManifest(t, testRelease{version: "1.0.0"})
	img, _, err := Build(context.Background(), BuildOptions{Manifest: m, Version: "1.0.0"}, t.TempDir())
	must(t, err)
	if log, err := ImageChangelog(img); err != nil || log != nil {
		t.Errorf("changelog of a release built without one: %v, %v", log, err)
	}
}

// The repository's manifest names the repository's changelog, and a build
// of it now (a pre-release) would carry the [Unreleased] section.
func TestRepositoryManifestChangelog(t *testing.T) {
	m, err := LoadManifest("../../release/conf.yaml")
	must(t, err)
	data, section, err := BuildOptions{Manifest: m}.changelog("0.0.0-test")
	must(t, err)
	if _, err := changelog.Parse("CHANGELOG.md", data); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(section, "## [Unreleased]") {
		t.Errorf("the repository's build carries %q", section)
	}
}
