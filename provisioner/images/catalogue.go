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
	// (https://CHANNEL.release.flatcar-linux.net/BOARD).
	BaseURL string
	// KeyFile is the OpenPGP public key release files must be signed by;
	// default: the Flatcar image signing key shipped with Racker.
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

// prepareTestOS serves the simulator's test OS from a local build
// (make testos). It is built on this machine, so there is no signature to
// check; only its presence is.
func prepareTestOS(s Spec) (*Release, error) {
	if s.Dir == "" {
		return nil, errors.New("testos: no release folder (--testos-dir, e.g. bin/testos after make testos)")
	}
	dir := filepath.Join(s.Dir, s.Version)
	files := []string{Kernel, Initrd, Image}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("testos release %s: %w (run make testos)", dir, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("testos release %s: %s is not a regular file", dir, f)
		}
	}
	return &Release{OS: "testos", Version: s.Version, Dir: dir, Files: files}, nil
}
