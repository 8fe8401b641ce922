package changelog

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Section returns the section of version ("Unreleased" for the unreleased
// one; a leading v is ignored), or nil when the changelog has none.
func (c *Changelog) Section(version string) *Section {
	if strings.EqualFold(version, Unreleased) {
		if len(c.Sections) > 0 && c.Sections[0].Version == Unreleased {
			return &c.Sections[0]
		}
		return nil
	}
	v, err := semver.NewVersion(version)
	if err != nil {
		return nil
	}
	for i := range c.Sections {
		if s := &c.Sections[i]; s.semver != nil && s.semver.Equal(v) {
			return s
		}
	}
	return nil
}

// Between returns the released sections after from up to and including to
// (from < version ≤ to), newest first: what an operator gets by moving
// from the installed release to the offered one.
func (c *Changelog) Between(from, to string) ([]Section, error) {
	vf, err := semver.NewVersion(from)
	if err != nil {
		return nil, fmt.Errorf("changes since %q: not a version", from)
	}
	vt, err := semver.NewVersion(to)
	if err != nil {
		return nil, fmt.Errorf("changes up to %q: not a version", to)
	}
	var out []Section
	for _, s := range c.Sections {
		if s.semver != nil && s.semver.GreaterThan(vf) && !s.semver.GreaterThan(vt) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Marked returns the entries of sections carrying marker's flag
// (BreakingMarker or MigrationMarker), each with its section's version.
func Marked(sections []Section, marker string) []VersionedEntry {
	var out []VersionedEntry
	for _, s := range sections {
		for _, g := range s.Groups {
			for _, e := range g.Entries {
				if marker == BreakingMarker && e.Breaking || marker == MigrationMarker && e.Migration {
					out = append(out, VersionedEntry{Version: s.Version, Entry: e})
				}
			}
		}
	}
	return out
}

// VersionedEntry is an entry with the version whose section holds it.
type VersionedEntry struct {
	Version string
	Entry
}
