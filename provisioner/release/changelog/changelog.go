// Package changelog reads Racker's CHANGELOG.md, written in the Keep a
// Changelog 1.1.0 format (https://keepachangelog.com/en/1.1.0/) with
// Semantic Versioning, so that each release carries its own notes and
// `racker update`/`upgrade` can show an operator what changes between the
// installed and the offered release before anything is switched.
//
// The format is read strictly, because a changelog that only people read
// rots quietly: a section is `## [Unreleased]` or `## [X.Y.Z] - YYYY-MM-DD`
// (optionally ` [YANKED]`), newest first; inside it only `### Added`,
// `Changed`, `Deprecated`, `Removed`, `Fixed` and `Security` groups of list
// entries. Two markers at the start of an entry carry what an upgrade must
// ask about: `**Breaking:**` (the change needs the operator to act or
// breaks compatibility) and `**Migration:**` (the release rewrites the state
// on disk; see release.Installer's state migrations).
package changelog

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

// Kinds are Keep a Changelog's groups, in the order it lists them.
var Kinds = []string{"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}

// Entry markers (see the package comment).
const (
	BreakingMarker  = "**Breaking:**"
	MigrationMarker = "**Migration:**"
)

// Unreleased is Section.Version of the `## [Unreleased]` section.
const Unreleased = "Unreleased"

// Changelog is a parsed CHANGELOG.md.
type Changelog struct {
	// Sections, newest first; the Unreleased section, when there is one,
	// comes first.
	Sections []Section
}

// Section is one release's notes (or the unreleased ones).
type Section struct {
	// Version is "Unreleased" or a release version as written (1.2.3).
	Version string
	Date    string
	Yanked  bool
	Groups  []Group
	// Text is the section as written, from its heading to its last line.
	Text string
	// Line is where the heading is (1-based).
	Line int

	semver *semver.Version
}

// Group is one `### Kind` list.
type Group struct {
	Kind    string
	Entries []Entry
}

// Entry is one list item, its continuation lines joined with newlines.
type Entry struct {
	Text      string
	Breaking  bool
	Migration bool
}

var (
	releaseHeading = regexp.MustCompile(`^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})( \[YANKED\])?\s*$`)
	unreleased     = regexp.MustCompile(`(?i)^## \[unreleased\]\s*$`)
	linkDef        = regexp.MustCompile(`^\[[^\]]+\]: \S+`)
	listItem       = regexp.MustCompile(`^[-*] `)
)

// Parse reads a changelog; name prefixes error positions (CHANGELOG.md:12).
// Every problem is reported at once.
func Parse(name string, data []byte) (*Changelog, error) {
	p := parser{name: name, seen: map[string]int{}}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i, line := range lines {
		p.line(i+1, line)
	}
	p.close()
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(p.errs, "\n"))
	}
	return &p.c, nil
}

type parser struct {
	name  string
	c     Changelog
	cur   *Section
	raw   []string // lines of cur
	links bool     // link definitions started: the sections are over
	seen  map[string]int
	errs  []string
}

func (p *parser) errorf(n int, format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf("%s:%d: ", p.name, n)+fmt.Sprintf(format, args...))
}

func (p *parser) line(n int, line string) {
	switch {
	case strings.HasPrefix(line, "## "):
		p.close()
		p.heading(n, line)
	case p.links:
		if strings.TrimSpace(line) != "" && !linkDef.MatchString(line) {
			p.errorf(n, "text after the link definitions that end the changelog")
		}
	case p.cur == nil:
		// The preamble (title, introduction) is free text.
	case linkDef.MatchString(line):
		p.close()
		p.links = true
	case strings.HasPrefix(line, "### "):
		p.raw = append(p.raw, line)
		p.group(n, strings.TrimSpace(strings.TrimPrefix(line, "### ")))
	case listItem.MatchString(line):
		p.raw = append(p.raw, line)
		if len(p.cur.Groups) == 0 {
			p.errorf(n, "a list entry outside a ### group (%s)", strings.Join(Kinds, ", "))
			return
		}
		g := &p.cur.Groups[len(p.cur.Groups)-1]
		g.Entries = append(g.Entries, newEntry(strings.TrimSpace(line[2:])))
	case strings.TrimSpace(line) == "":
		p.raw = append(p.raw, line)
	case line[0] == ' ' || line[0] == '\t':
		p.raw = append(p.raw, line)
		g := p.lastGroup()
		if g == nil || len(g.Entries) == 0 {
			p.errorf(n, "an indented line outside a list entry")
			return
		}
		e := &g.Entries[len(g.Entries)-1]
		e.Text += "\n" + strings.TrimSpace(line)
	default:
		p.raw = append(p.raw, line)
		p.errorf(n, "text in a section must be a list entry under a ### group (Keep a Changelog 1.1.0)")
	}
}

func (p *parser) lastGroup() *Group {
	if p.cur == nil || len(p.cur.Groups) == 0 {
		return nil
	}
	return &p.cur.Groups[len(p.cur.Groups)-1]
}

func newEntry(text string) Entry {
	return Entry{
		Text:      text,
		Breaking:  strings.HasPrefix(text, BreakingMarker),
		Migration: strings.HasPrefix(text, MigrationMarker),
	}
}

func (p *parser) heading(n int, line string) {
	s := Section{Line: n}
	if p.links {
		p.errorf(n, "a section after the link definitions that end the changelog")
	}
	switch m := releaseHeading.FindStringSubmatch(line); {
	case unreleased.MatchString(line):
		s.Version = Unreleased
		if len(p.c.Sections) > 0 {
			p.errorf(n, "[Unreleased] must be the first section")
		}
	case m != nil:
		s.Version, s.Date, s.Yanked = m[1], m[2], m[3] != ""
		v, err := semver.StrictNewVersion(s.Version)
		if err != nil {
			p.errorf(n, "version %q: want MAJOR.MINOR.PATCH (Semantic Versioning 2.0.0)", s.Version)
		}
		s.semver = v
		if _, err := time.Parse("2006-01-02", s.Date); err != nil {
			p.errorf(n, "date %q: want YYYY-MM-DD", s.Date)
		}
		if prev := p.previousRelease(); v != nil && prev != nil && !v.LessThan(prev.semver) {
			p.errorf(n, "%s comes after %s (line %d): sections go newest first", s.Version, prev.Version, prev.Line)
		}
	default:
		p.errorf(n, "section heading %q: want \"## [Unreleased]\" or \"## [X.Y.Z] - YYYY-MM-DD\"", line)
	}
	if first, ok := p.seen[s.Version]; ok {
		p.errorf(n, "%s has a second section (the first is on line %d)", s.Version, first)
	}
	if s.Version != "" {
		p.seen[s.Version] = n
	}
	p.cur = &s
	p.raw = []string{line}
}

func (p *parser) previousRelease() *Section {
	for i := len(p.c.Sections) - 1; i >= 0; i-- {
		if p.c.Sections[i].semver != nil {
			return &p.c.Sections[i]
		}
	}
	return nil
}

func (p *parser) group(n int, kind string) {
	known := false
	for _, k := range Kinds {
		known = known || k == kind
	}
	if !known {
		p.errorf(n, "group %q: want one of %s", kind, strings.Join(Kinds, ", "))
	}
	for _, g := range p.cur.Groups {
		if g.Kind == kind {
			p.errorf(n, "a second ### %s group in %s", kind, p.cur.Version)
		}
	}
	p.cur.Groups = append(p.cur.Groups, Group{Kind: kind})
}

// close finishes the current section.
func (p *parser) close() {
	if p.cur == nil || p.links {
		return
	}
	for len(p.raw) > 0 && strings.TrimSpace(p.raw[len(p.raw)-1]) == "" {
		p.raw = p.raw[:len(p.raw)-1]
	}
	p.cur.Text = strings.Join(p.raw, "\n") + "\n"
	p.c.Sections = append(p.c.Sections, *p.cur)
	p.cur, p.raw = nil, nil
}
