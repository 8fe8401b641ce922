// Package release builds Racker's installer image and installs, updates,
// upgrades and rolls back Racker on the management node.
//
// Racker ships as an OCI image whose layers hold the payload (the racker
// binary, iPXE boot files, systemd units, optional tools) under /racker and
// whose default command is `racker install`. The same image is what
// `racker get/update/upgrade` pull from a registry, so there is one artefact
// and one install path, whether it arrives by `docker run` or over the wire.
//
// On the host the payload lives in <install-dir>/versions/VERSION/ and
// <install-dir>/current is a symlink switched with a rename, so a crash at any
// moment leaves either the old version or the new one current, never a half of
// one. The package's doors are Build (manifest → image), Registry (list,
// pull, push releases) and Installer (install, rollback, inspect).
package release

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Paths inside the image and inside an installed version folder.
const (
	// ImageRoot is the folder of the image that holds the payload; the
	// container runs /racker/bin/racker install.
	ImageRoot = "racker"
	// InfoFile describes a release (version, registry, state version).
	InfoFile = "release.json"
	// VersionFile holds the version alone, for humans and shell scripts.
	VersionFile = "VERSION"
	// FilesFile lists every installed file with its SHA-256; it is written
	// last into a version folder, so the folder can be checked against it.
	FilesFile = ".racker-files.json"
	// MigrationsDir holds state migrations: N.sh moves state version N-1 to N.
	MigrationsDir = "migrations"
	// UnitsDir holds the systemd units installed on the host.
	UnitsDir = "systemd"
	// InfoLabel is the image config label carrying the release Info as JSON,
	// so a client can judge a release before downloading its layers.
	InfoLabel = "io.github.racker.release"
	// StateVersionFile in the state dir says which state layout is on disk.
	StateVersionFile = "state-version"
	// ChangelogFile is the project's CHANGELOG.md as of the release, in the
	// release layer (the image's last, a few KiB), so the changes can be read
	// before the other layers are downloaded.
	ChangelogFile = "CHANGELOG.md"
	// ChangesLabel is the image config label carrying the release's own
	// section of the changelog (Markdown), for `docker inspect` and tools.
	ChangesLabel = "io.github.racker.changes"
)

// Info describes one release; it is release.json in the payload and the
// InfoLabel of the image.
type Info struct {
	Version  string `json:"version"`
	Registry string `json:"registry,omitempty"`
	// StateVersion is the state layout this release reads and writes.
	StateVersion int `json:"state_version"`
	// MigratesFrom is the oldest state version the release's migrations can
	// bring to StateVersion; older state is refused.
	MigratesFrom int      `json:"migrates_from"`
	Modules      []string `json:"modules"`
}

// Validate checks what the installer relies on.
func (i Info) Validate() error {
	if _, err := ParseVersion(i.Version); err != nil {
		return err
	}
	if i.StateVersion < 1 || i.MigratesFrom < 1 || i.MigratesFrom > i.StateVersion {
		return fmt.Errorf("release %s: state version %d, migrates from %d: want 1 ≤ from ≤ version", i.Version, i.StateVersion, i.MigratesFrom)
	}
	return nil
}

// ReadInfo reads release.json from a payload folder.
func ReadInfo(dir string) (*Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, fmt.Errorf("reading the release description: %w", err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, InfoFile), err)
	}
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, InfoFile), err)
	}
	return &info, nil
}

// ParseVersion parses a release tag: semver, with or without a leading v.
func ParseVersion(s string) (*semver.Version, error) {
	v, err := semver.NewVersion(s)
	if err != nil || strings.Count(strings.TrimPrefix(s, "v"), ".") != 2 {
		return nil, fmt.Errorf("release version %q: want MAJOR.MINOR.PATCH (semver)", s)
	}
	return v, nil
}

// Policy chooses a release among the registry's tags.
type Policy int

const (
	// SameMinor is `update`: the newest release with the installed major.minor.
	SameMinor Policy = iota
	// Newest is `upgrade`: the newest release overall.
	Newest
)

// Pick returns the tag that policy chooses relative to installed, or "" when
// none qualifies. Tags that are not semver, and pre-releases, are ignored.
func Pick(tags []string, installed string, p Policy) (string, error) {
	cur, err := ParseVersion(installed)
	if err != nil {
		return "", fmt.Errorf("installed version: %w", err)
	}
	vs := SortedVersions(tags)
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		if p == SameMinor && (v.Major() != cur.Major() || v.Minor() != cur.Minor()) {
			continue
		}
		return v.Original(), nil
	}
	return "", nil
}

// SortedVersions returns the release tags among tags, oldest first.
func SortedVersions(tags []string) []*semver.Version {
	var vs []*semver.Version
	for _, t := range tags {
		v, err := ParseVersion(t)
		if err != nil || v.Prerelease() != "" {
			continue
		}
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].LessThan(vs[j]) })
	return vs
}
