package release

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/racker/racker/provisioner/release/changelog"
)

// maxChangelog bounds what is read of an image's changelog: a registry is
// not trusted to send a reasonable one.
const maxChangelog = 4 << 20

// changelog reads the build's changelog and returns it with the release's
// own section. A release version must have a section: cutting a release is
// when the [Unreleased] entries move under the version's heading, and an
// image that cannot say what it changes is refused. A pre-release (a build
// between releases, 0.0.0-abc123 from git describe) carries [Unreleased].
func (o BuildOptions) changelog(version string) ([]byte, string, error) {
	file := o.Changelog
	if file == "" {
		if o.Manifest.Changelog == "" {
			return nil, "", nil
		}
		file = o.Manifest.Changelog
		if !filepath.IsAbs(file) {
			file = filepath.Join(o.Manifest.workDir(), file)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("reading the changelog: %w", err)
	}
	log, err := changelog.Parse(file, data)
	if err != nil {
		return nil, "", fmt.Errorf("reading the changelog:\n%w", err)
	}
	v, err := ParseVersion(version)
	if err != nil {
		return nil, "", err
	}
	if v.Prerelease() != "" {
		if s := log.Section(changelog.Unreleased); s != nil {
			return data, s.Text, nil
		}
		return data, "", nil
	}
	s := log.Section(version)
	if s == nil {
		return nil, "", fmt.Errorf("%s has no section for release %s: move the [Unreleased] entries under \"## [%s] - %s\" before building it",
			file, version, v, time.Now().UTC().Format("2006-01-02"))
	}
	return data, s.Text, nil
}

// ImageChangelog reads the changelog from an image's release layer (its
// last), downloading that layer alone, so the changes can be shown before
// the release is fetched. A release built without a changelog gives nil.
func ImageChangelog(img v1.Image) (*changelog.Changelog, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the image's layers: %w", err)
	}
	if len(layers) == 0 {
		return nil, errors.New("the image has no layers: not a Racker release image")
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("fetching the release layer: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	want := ImageRoot + "/" + ChangelogFile
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the release layer: %w", err)
		}
		if hdr.Name != want {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxChangelog+1))
		if err != nil {
			return nil, fmt.Errorf("reading the release's %s: %w", ChangelogFile, err)
		}
		if len(data) > maxChangelog {
			return nil, fmt.Errorf("the release's %s is over %d MiB: refusing it", ChangelogFile, maxChangelog>>20)
		}
		return changelog.Parse("the release's "+ChangelogFile, data)
	}
}

// fileInLayer reads one file of a layer, at most max bytes of it.
func fileInLayer(l v1.Layer, want string, max int64) ([]byte, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s is not in the layer", want)
		}
		if err != nil {
			return nil, err
		}
		if hdr.Name != want {
			continue
		}
		if hdr.Size > max {
			return nil, fmt.Errorf("%s is over %d bytes", want, max)
		}
		return io.ReadAll(io.LimitReader(tr, max))
	}
}
