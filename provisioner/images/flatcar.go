package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FlatcarKeyFingerprint is the primary key of the Flatcar image signing key
// ("Flatcar Buildbot (Official Builds) <buildbot@flatcar-linux.org>").
const FlatcarKeyFingerprint = "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"

// versionFile names a release's version (FLATCAR_VERSION=…); it is signed
// like the images.
const versionFile = "version.txt"

// lastResolved remembers, per channel and alias, the version "current"
// meant when the release server last answered, so a restart without
// internet keeps serving the cached release.
const lastResolved = "resolved"

func prepareFlatcar(ctx context.Context, s Spec) (*Release, error) {
	if s.CacheDir == "" {
		return nil, errors.New("flatcar: no image cache folder")
	}
	if s.Channel == "" {
		s.Channel = "stable"
	}
	if s.Board == "" {
		s.Board = "amd64-usr"
	}
	if !plainName.MatchString(s.Channel) || !plainName.MatchString(s.Board) {
		return nil, fmt.Errorf("flatcar: channel %q / board %q must be plain names", s.Channel, s.Board)
	}
	if s.BaseURL == "" {
		s.BaseURL = "https://" + s.Channel + ".release.flatcar-linux.net/" + s.Board
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.HTTP == nil {
		// No overall timeout: an image is hundreds of MB on links of any
		// speed; ctx ends a download, and a server that never answers is
		// caught by the header timeout.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = time.Minute
		s.HTTP = &http.Client{Transport: tr}
	}
	if err := os.MkdirAll(s.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("flatcar: image cache: %w", err)
	}
	keys, err := flatcarKeyring(s.KeyFile)
	if err != nil {
		return nil, err
	}
	d := &downloader{spec: s, keys: keys}

	version := s.Version
	if !isConcreteVersion(version) {
		version, err = d.resolve(ctx, s.Version)
		if err != nil {
			return nil, err
		}
	}
	if !plainName.MatchString(version) {
		return nil, fmt.Errorf("flatcar: release server names version %q, not a plain version", version)
	}
	dir := filepath.Join(s.CacheDir, "flatcar", version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("flatcar %s: %w", version, err)
	}
	files := []string{Kernel, Initrd, Image}
	for _, f := range files {
		if err := d.fetchVerified(ctx, version, dir, f); err != nil {
			return nil, err
		}
	}
	armored, err := keys.Armored()
	if err != nil {
		return nil, fmt.Errorf("flatcar %s: %w", version, err)
	}
	// flatcar-install checks the image's signature itself, so it is served
	// too, and the key it checks it with goes to the nodes.
	return &Release{OS: "flatcar", Version: version, Dir: dir,
		Files: append(files, Kernel+".sig", Initrd+".sig", Image+".sig"), SigningKey: armored,
		OtherKey: otherKey(keys, []string{FlatcarKeyFingerprint})}, nil
}

// isConcreteVersion tells "4152.2.3" from aliases such as "current" or
// "current-2023".
func isConcreteVersion(v string) bool {
	return v != "" && v[0] >= '0' && v[0] <= '9'
}

// otherKey is the Release.OtherKey of a release verified with keys, where
// own are the fingerprints of the key the OS's installer has built in.
func otherKey(keys *Keyring, own []string) string {
	fps := keys.Fingerprints()
	if slices.Equal(fps, own) {
		return ""
	}
	return strings.Join(fps, ",")
}

func flatcarKeyring(keyFile string) (*Keyring, error) {
	if keyFile != "" {
		return ReadKeyringFile(keyFile)
	}
	return shippedFlatcarKey()
}

type downloader struct {
	spec Spec
	keys *Keyring
}

// resolve asks the release server which version an alias names, verifying
// version.txt like any other file. Without an answer it falls back on the
// version the alias named last time, if that release is cached.
func (d *downloader) resolve(ctx context.Context, alias string) (string, error) {
	s := d.spec
	memo := filepath.Join(s.CacheDir, "flatcar", lastResolved, s.Channel+"-"+s.Board+"-"+alias)
	tmp, err := os.MkdirTemp(filepath.Join(s.CacheDir), ".resolve-*")
	if err == nil {
		defer os.RemoveAll(tmp)
		err = d.download(ctx, alias+"/"+versionFile, filepath.Join(tmp, versionFile))
	}
	if err == nil {
		err = d.download(ctx, alias+"/"+versionFile+".sig", filepath.Join(tmp, versionFile+".sig"))
	}
	if err == nil {
		err = d.keys.VerifyFile(filepath.Join(tmp, versionFile), filepath.Join(tmp, versionFile+".sig"))
	}
	var version string
	if err == nil {
		version, err = readFlatcarVersion(filepath.Join(tmp, versionFile))
	}
	if err != nil {
		if b, rerr := os.ReadFile(memo); rerr == nil {
			v := strings.TrimSpace(string(b))
			s.Logger.Warn("could not ask the Flatcar release server which version is "+alias+"; using the one it named last time",
				"channel", s.Channel, "version", v, "err", err)
			return v, nil
		}
		return "", fmt.Errorf("flatcar %s %s: finding the version: %w", s.Channel, alias, err)
	}
	if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
		os.WriteFile(memo, []byte(version+"\n"), 0o644)
	}
	return version, nil
}

func readFlatcarVersion(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "FLATCAR_VERSION="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s has no FLATCAR_VERSION line", path)
}

// fetchVerified makes dir/name a verified copy of the release file: a
// cached copy is used when its signature still checks out; otherwise the
// file and its signature are downloaded beside it, verified, and only then
// renamed into place. A file that fails is deleted, never served.
func (d *downloader) fetchVerified(ctx context.Context, version, dir, name string) error {
	path, sig := filepath.Join(dir, name), filepath.Join(dir, name+".sig")
	if _, err := os.Stat(path); err == nil {
		if err := d.keys.VerifyFile(path, sig); err == nil {
			d.spec.Logger.Debug("using the cached release file", "file", path)
			return nil
		} else {
			d.spec.Logger.Warn("cached release file does not verify; downloading it again", "err", err)
		}
	}
	tmpPath, tmpSig := path+".part", sig+".part"
	defer os.Remove(tmpPath)
	defer os.Remove(tmpSig)
	if err := d.download(ctx, version+"/"+name+".sig", tmpSig); err != nil {
		return fmt.Errorf("flatcar %s: signature of %s: %w", version, name, err)
	}
	d.spec.Logger.Info("downloading a Flatcar release file", "version", version, "file", name)
	if err := d.download(ctx, version+"/"+name, tmpPath); err != nil {
		return fmt.Errorf("flatcar %s: %w", version, err)
	}
	if err := d.keys.VerifyFile(tmpPath, tmpSig); err != nil {
		return fmt.Errorf("flatcar %s: downloaded %s does not verify: %w", version, name, err)
	}
	if err := os.Rename(tmpSig, sig); err != nil {
		return fmt.Errorf("flatcar %s: %w", version, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("flatcar %s: %w", version, err)
	}
	return nil
}

// download copies BaseURL/rel to path.
func (d *downloader) download(ctx context.Context, rel, path string) error {
	url := d.spec.BaseURL + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	resp, err := d.spec.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("downloading %s: %w", url, err)
	}
	return nil
}
