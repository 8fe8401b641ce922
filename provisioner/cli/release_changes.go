package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/racker/racker/provisioner/release"
	"github.com/racker/racker/provisioner/release/changelog"
)

// offer is a release the registry offers, fetched only as far as judging it
// takes: its manifest, config (release info) and release layer (changelog),
// not the payload.
type offer struct {
	version string
	img     v1.Image
	digest  v1.Hash
	info    *release.Info
	// log is the release's changelog; nil when it was built without one.
	log *changelog.Changelog
}

func fetchOffer(ctx context.Context, reg *release.Registry, version string) (*offer, error) {
	img, digest, err := reg.Image(ctx, version)
	if err != nil {
		return nil, err
	}
	info, err := release.ImageInfo(img)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", version, err)
	}
	log, err := release.ImageChangelog(img)
	if err != nil {
		return nil, fmt.Errorf("reading the changes in release %s: %w", version, err)
	}
	return &offer{version: version, img: img, digest: digest, info: info, log: log}, nil
}

// changes is the offered release's changelog between installed and it.
func (o *offer) changes(installed string) []changelog.Section {
	if o.log == nil {
		return nil
	}
	secs, err := o.log.Between(installed, o.version)
	if err != nil {
		return nil
	}
	return secs
}

// printChanges shows what moving from installed to o changes, as o's own
// changelog says, indented under a heading.
func printChanges(w io.Writer, installed string, o *offer) {
	secs := o.changes(installed)
	switch {
	case o.log == nil:
		fmt.Fprintf(w, "  (release %s carries no changelog)\n", o.version)
		return
	case len(secs) == 0:
		fmt.Fprintf(w, "  (the changelog of %s has no section after %s)\n", o.version, installed)
		return
	}
	fmt.Fprintf(w, "changes from %s to %s:\n", installed, o.version)
	for _, s := range secs {
		for _, line := range strings.Split(strings.TrimRight(s.Text, "\n"), "\n") {
			fmt.Fprintln(w, strings.TrimRight("  "+line, " "))
		}
		fmt.Fprintln(w)
	}
}

// crossesMajor says whether from → to may break compatibility under
// Semantic Versioning: a new major version, or any minor step while the
// major version is 0 (initial development, where anything may change).
func crossesMajor(from, to string) bool {
	vf, err1 := release.ParseVersion(from)
	vt, err2 := release.ParseVersion(to)
	if err1 != nil || err2 != nil {
		return true
	}
	if vt.Major() != vf.Major() {
		return true
	}
	return vf.Major() == 0 && vt.Minor() != vf.Minor()
}

// confirmUpgrade is the gate before an upgrade that crosses a major version
// or migrates the state (after which rollback to the installed release is
// refused): it lists the breaking changes and migrations, then asks on a
// terminal; without one it refuses unless yes, as factory reset does.
func (e *Env) confirmUpgrade(in *release.Installer, cur *release.Info, o *offer, yes bool) error {
	migrations, err := in.Migrations(o.info)
	if err != nil {
		return err
	}
	major := crossesMajor(cur.Version, o.version)
	if !major && len(migrations) == 0 {
		return nil
	}
	w := e.Stdout
	var why []string
	if major {
		why = append(why, "crosses a major version")
		fmt.Fprintf(w, "racker %s → %s crosses a major version; breaking changes:\n", cur.Version, o.version)
		marked := changelog.Marked(o.changes(cur.Version), changelog.BreakingMarker)
		if len(marked) == 0 {
			fmt.Fprintln(w, "  none marked **Breaking:** in the changelog")
		}
		for _, m := range marked {
			fmt.Fprintf(w, "  - [%s] %s\n", m.Version, indentMore(strings.TrimSpace(strings.TrimPrefix(m.Text, changelog.BreakingMarker))))
		}
	}
	if len(migrations) > 0 {
		why = append(why, "migrates the state")
		fmt.Fprintf(w, "state migrations: the state in %s goes from version %d to %d (migrations/%s.sh of %s); afterwards `racker rollback` to %s is refused\n",
			e.StateDir, migrations[0]-1, migrations[len(migrations)-1], joinInts(migrations, ".sh, migrations/"), o.version, cur.Version)
		for _, m := range changelog.Marked(o.changes(cur.Version), changelog.MigrationMarker) {
			fmt.Fprintf(w, "  - [%s] %s\n", m.Version, indentMore(strings.TrimSpace(strings.TrimPrefix(m.Text, changelog.MigrationMarker))))
		}
	}
	if yes {
		return nil
	}
	reason := strings.Join(why, " and ")
	if !e.Interactive() {
		return fmt.Errorf("upgrade to %s %s; not on a terminal, so pass --yes to confirm", o.version, reason)
	}
	fmt.Fprintf(w, "Upgrade to %s? [y/N] ", o.version)
	answer, _ := bufio.NewReader(e.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return &ExitError{Code: 1, Err: errors.New("upgrade: cancelled; nothing changed")}
	}
	return nil
}

func indentMore(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func joinInts(ns []int, sep string) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, sep)
}
