package changelog

import (
	"os"
	"strings"
	"testing"
)

const sample = `# Changelog

All notable changes to this project will be documented in this file.

## [Unreleased]

### Added
- A thing nobody has yet.

## [2.0.0] - 2026-12-10

### Changed
- **Breaking:** ` + "`racker plan -o json`" + ` names nodes by hostname.
- **Migration:** plan.json moves to plan/v2.json; the upgrade
  rewrites it (state version 2).

### Removed
- **Breaking:** the --old flag.

## [1.0.1] - 2026-12-05

### Fixed
- DHCP answers a BMC after a restart.
* TFTP honours windowsize.

## [1.0.0] - 2026-12-01 [YANKED]

### Added
- First release.

[unreleased]: https://example.com/compare/v2.0.0...HEAD
[2.0.0]: https://example.com/compare/v1.0.1...v2.0.0
`

func TestParse(t *testing.T) {
	c, err := Parse("CHANGELOG.md", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, s := range c.Sections {
		versions = append(versions, s.Version)
	}
	if got := strings.Join(versions, " "); got != "Unreleased 2.0.0 1.0.1 1.0.0" {
		t.Fatalf("sections %q", got)
	}
	major := c.Section("v2.0.0")
	if major == nil || major.Date != "2026-12-10" || len(major.Groups) != 2 || major.Groups[0].Kind != "Changed" {
		t.Fatalf("2.0.0: %+v", major)
	}
	mig := major.Groups[0].Entries[1]
	if !mig.Migration || mig.Breaking || mig.Text != "**Migration:** plan.json moves to plan/v2.json; the upgrade\nrewrites it (state version 2)." {
		t.Errorf("migration entry %+v", mig)
	}
	if !strings.HasPrefix(major.Text, "## [2.0.0] - 2026-12-10\n\n### Changed\n") || !strings.HasSuffix(major.Text, "- **Breaking:** the --old flag.\n") {
		t.Errorf("2.0.0 text:\n%s", major.Text)
	}
	if fix := c.Section("1.0.1"); fix == nil || len(fix.Groups[0].Entries) != 2 {
		t.Errorf("1.0.1 (both list markers): %+v", fix)
	}
	if y := c.Section("1.0.0"); y == nil || !y.Yanked {
		t.Errorf("1.0.0 is yanked: %+v", y)
	}
	if u := c.Section("unreleased"); u == nil || u.Groups[0].Entries[0].Text != "A thing nobody has yet." {
		t.Errorf("unreleased: %+v", u)
	}
	if c.Section("3.0.0") != nil || c.Section("not a version") != nil {
		t.Error("sections of versions the changelog lacks")
	}

	between, err := c.Between("1.0.0", "2.0.0")
	if err != nil || len(between) != 2 || between[0].Version != "2.0.0" || between[1].Version != "1.0.1" {
		t.Fatalf("Between(1.0.0, 2.0.0) = %+v, %v", between, err)
	}
	if b, _ := c.Between("1.0.1", "1.0.1"); len(b) != 0 {
		t.Errorf("nothing lies between a version and itself: %+v", b)
	}
	if _, err := c.Between("x", "1.0.0"); err == nil {
		t.Error("Between of a non-version")
	}
	breaking := Marked(between, BreakingMarker)
	if len(breaking) != 2 || breaking[1].Version != "2.0.0" || breaking[1].Text != "**Breaking:** the --old flag." {
		t.Errorf("breaking entries %+v", breaking)
	}
	if m := Marked(between, MigrationMarker); len(m) != 1 {
		t.Errorf("migration entries %+v", m)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"heading", "## 1.0.0\n", `CHANGELOG.md:1: section heading "## 1.0.0"`},
		{"no date", "## [1.0.0]\n", "section heading"},
		{"bad date", "## [1.0.0] - 2026-13-01\n", `CHANGELOG.md:1: date "2026-13-01": want YYYY-MM-DD`},
		{"not semver", "## [1.0] - 2026-12-01\n", `version "1.0": want MAJOR.MINOR.PATCH`},
		{"order", "## [1.0.0] - 2026-12-01\n## [1.1.0] - 2026-12-02\n", "CHANGELOG.md:2: 1.1.0 comes after 1.0.0 (line 1): sections go newest first"},
		{"twice", "## [1.0.0] - 2026-12-01\n## [1.0.0] - 2026-12-01\n", "1.0.0 has a second section (the first is on line 1)"},
		{"unreleased last", "## [1.0.0] - 2026-12-01\n## [Unreleased]\n", "CHANGELOG.md:2: [Unreleased] must be the first section"},
		{"kind", "## [Unreleased]\n### Improved\n- x\n", `CHANGELOG.md:2: group "Improved": want one of Added, Changed, Deprecated, Removed, Fixed, Security`},
		{"kind twice", "## [Unreleased]\n### Added\n- x\n### Added\n- y\n", "CHANGELOG.md:4: a second ### Added group"},
		{"entry outside a group", "## [Unreleased]\n- x\n", "CHANGELOG.md:2: a list entry outside a ### group"},
		{"prose", "## [Unreleased]\n### Added\nSome prose.\n", "CHANGELOG.md:3: text in a section must be a list entry"},
		{"indented orphan", "## [Unreleased]\n  more\n", "CHANGELOG.md:2: an indented line outside a list entry"},
		{"after links", "## [Unreleased]\n[unreleased]: https://x\nmore\n", "CHANGELOG.md:3: text after the link definitions"},
		{"section after links", "## [Unreleased]\n[unreleased]: https://x\n## [1.0.0] - 2026-12-01\n", "CHANGELOG.md:3: a section after the link definitions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("CHANGELOG.md", []byte(tc.text))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			got, want := err.Error(), tc.want
			if !strings.Contains(got, want) {
				t.Fatalf("error %q, want it to contain %q", got, want)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Parse("CHANGELOG.md", []byte("## [1.0] - 2026-12-01\n### Improved\n- x\n"))
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("want two problems, one per line: %v", err)
	}
}

// The repository's own changelog is valid: a malformed entry fails here,
// not at release time.
func TestRepositoryChangelog(t *testing.T) {
	data, err := os.ReadFile("../../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("CHANGELOG.md", data)
	if err != nil {
		t.Fatal(err)
	}
	if c.Section(Unreleased) == nil {
		t.Error("CHANGELOG.md has no [Unreleased] section to collect the next release's changes")
	}
}
