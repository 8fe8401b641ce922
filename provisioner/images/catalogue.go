package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
)

// Spec chooses the OS release to serve.
type Spec struct {
	// OS is "flatcar" or "testos".
	OS string
	// Version: for flatcar "current" (the channel's newest, the default) or
	// a version such as "4152.2.3"; for testos the release subfolder
	// ("current" by default).
	Version string

	// Flatcar only.
	Channel string // stable (default), beta, alpha, lts
	Board   string // amd64-usr (default)
	// BaseURL overrides the release server
	// (https://CHANNEL.release.flatcar-linux.net/BOARD), e.g. a private mirror.
	BaseURL string
	// KeyFile is the OpenPGP public key the mirror's release files are
	// signed with (a private mirror re-signs Flatcar's images with its own
	// key); default: for flatcar the Flatcar image signing key shipped with
	// Racker, for testos the release folder's image-signing-key.asc.
	KeyFile string
	// CacheDir keeps verified downloads (STATE/images); required.
	CacheDir string
	HTTP     *http.Client

	// TestOS only: the folder holding VERSION/ (make testos → bin/testos).
	Dir string

	Logger *slog.Logger
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Prepare returns the release to serve: for flatcar, each file downloaded
// (or found in the cache) and verified against its detached signature; for
// testos, the local release folder after checking its files are there.
func Prepare(ctx context.Context, s Spec) (*Release, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Version == "" {
		s.Version = "current"
	}
	if !plainName.MatchString(s.Version) {
		return nil, fmt.Errorf("OS version %q: not a plain version name", s.Version)
	}
	switch s.OS {
	case "flatcar":
		return prepareFlatcar(ctx, s)
	case "testos":
		return prepareTestOS(s)
	}
	return nil, fmt.Errorf("OS %q: choose flatcar or testos", s.OS)
}

// TestOSKeyFile is the public key a test OS release folder ships, as
// Flatcar publishes its image signing key (scripts/build-testos.sh).
const TestOSKeyFile = "image-signing-key.asc"

// prepareTestOS serves the simulator's test OS from a local build (make
// testos): a release folder laid out and signed like a Flatcar mirror's.
// Its version is the one its version.txt names, as a Flatcar release's, and
// its image and version.txt must verify with the folder's key (or
// Spec.KeyFile), so what the nodes' flatcar-install will check is checked
// here first.
func prepareTestOS(s Spec) (*Release, error) {
	if s.Dir == "" {
		return nil, errors.New("testos: no release folder (--testos-dir, e.g. bin/testos after make testos)")
	}
	dir := filepath.Join(s.Dir, s.Version)
	files := []string{Kernel, Initrd, Image, Image + ".sig", versionFile, versionFile + ".sig"}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("testos release %s: %w (run make testos)", dir, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("testos release %s: %s is not a regular file", dir, f)
		}
	}
	keyFile := s.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(dir, TestOSKeyFile)
		files = append(files, TestOSKeyFile)
	}
	keys, err := ReadKeyringFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("testos release %s: %w (run make testos)", dir, err)
	}
	// The test OS's installer has the folder's key built in, as
	// Flatcar's has Flatcar's.
	other := ""
	if s.KeyFile != "" {
		own, err := ReadKeyringFile(filepath.Join(dir, TestOSKeyFile))
		if err != nil {
			return nil, fmt.Errorf("testos release %s: %w (run make testos)", dir, err)
		}
		other = otherKey(keys, own.Fingerprints())
	}
	for _, f := range []string{versionFile, Image} {
		if err := keys.VerifyFile(filepath.Join(dir, f), filepath.Join(dir, f+".sig")); err != nil {
			return nil, fmt.Errorf("testos release %s: %w", dir, err)
		}
	}
	version, err := readFlatcarVersion(filepath.Join(dir, versionFile))
	if err != nil {
		return nil, fmt.Errorf("testos release %s: %w", dir, err)
	}
	if !plainName.MatchString(version) {
		return nil, fmt.Errorf("testos release %s: version %q is not a plain version name", dir, version)
	}
	armored, err := keys.Armored()
	if err != nil {
		return nil, fmt.Errorf("testos release %s: %w", dir, err)
	}
	return &Release{OS: "testos", Version: version, Dir: dir, Files: files, SigningKey: armored, OtherKey: other}, nil
}
