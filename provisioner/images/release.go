// Package images knows the operating systems Racker installs: where a
// release's files come from, how they are verified, and where they are kept.
// The boot services serve only a Release this package returned, so a file
// that failed its signature check is never handed to a node.
package images

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// The files of a Flatcar-style release folder (docs/boot-contract.md §2).
const (
	Kernel = "flatcar_production_pxe.vmlinuz"
	Initrd = "flatcar_production_pxe_image.cpio.gz"
	Image  = "flatcar_production_image.bin.bz2"
)

// Release is one verified OS release in a local folder, served at
// /assets/OS/VERSION/FILE.
type Release struct {
	OS      string // "flatcar" or "testos"
	Version string // a concrete version, or "current" for testos
	Dir     string // the folder holding Files
	// Files are the names that may be served from Dir; anything else in
	// the folder is not.
	Files []string
	// SigningKey is the armored OpenPGP public key (or keys) the release's
	// files were verified with; nodes get it for flatcar-install -k.
	SigningKey []byte
	// OtherKey names the key (its fingerprints) when it is not the OS's
	// own, the one its installer has built in (Flatcar's image signing
	// key; the test OS release folder's): a mirror that re-signs images.
	// An installer run without -k, as Lokomotive's install profiles run
	// flatcar-install, refuses such images. Empty for the OS's own key.
	OtherKey string
}

// Open opens one of the release's files for serving.
func (r *Release) Open(name string) (*os.File, error) {
	if r == nil || !slices.Contains(r.Files, name) {
		return nil, fmt.Errorf("opening %s: not a file of the release: %w", name, os.ErrNotExist)
	}
	f, err := os.Open(filepath.Join(r.Dir, name))
	if err != nil {
		return nil, fmt.Errorf("opening %s of %s %s: %w", name, r.OS, r.Version, err)
	}
	return f, nil
}
