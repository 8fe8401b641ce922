package cli

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/racker/racker/provisioner/release"
)

// Before a release is installed (docs/security.md): its version label must
// name the version asked for, and its cosign signature must be made by the
// trusted key over its digest. The trusted key is --trust-key, else the key
// the installed release ships (release-key.pub: pinned), else — a first
// install — the key the release itself ships, said aloud.

// trustedKey is the key a release must be signed with, and where it came
// from; nil when nothing is pinned and no --trust-key was given.
func (e *Env) trustedKey(in *release.Installer, flag string) (*ecdsa.PublicKey, string, error) {
	if flag != "" {
		b, err := os.ReadFile(flag)
		if err != nil {
			return nil, "", fmt.Errorf("--trust-key: %w", err)
		}
		k, err := release.ParsePublicKey(b)
		if err != nil {
			return nil, "", fmt.Errorf("--trust-key %s: %w", flag, err)
		}
		return k, "--trust-key " + flag, nil
	}
	p := filepath.Join(in.Layout.CurrentLink(), release.KeyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the pinned release key: %w", err)
	}
	k, err := release.ParsePublicKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("the pinned release key %s: %w", p, err)
	}
	return k, "the key pinned by the installed release (" + p + ")", nil
}

// verifyRelease checks img (tagged version, with digest) and its signature
// image sig, and returns the ID of the key that verified it.
func (e *Env) verifyRelease(in *release.Installer, img, sig v1.Image, digest v1.Hash, version, trustFlag string) (string, error) {
	if version != "" {
		if _, err := release.CheckVersionLabel(img, version); err != nil {
			return "", err
		}
	}
	key, from, err := e.trustedKey(in, trustFlag)
	if err != nil {
		return "", err
	}
	if key == nil {
		if key, err = release.ShippedKey(img); err != nil {
			return "", fmt.Errorf("%w: nothing is pinned and the release ships no key (%v); pass --trust-key FILE", release.ErrUnsigned, err)
		}
		from = "the key shipped in the release (first install: nothing pinned yet; --trust-key pins one)"
		fmt.Fprintf(e.Stderr, "note: trusting %s, %s\n", release.KeyID(key), from)
	}
	if err := release.VerifySignature(sig, digest, key); err != nil {
		return "", fmt.Errorf("release %s (%s) refused: %w; trusted: %s", version, digest, err, from)
	}
	e.Logger().Info("release signature verified", "version", version, "digest", digest, "key", release.KeyID(key))
	return release.KeyID(key), nil
}

// fetchSignature gets the signature of digest from the registry.
func fetchSignature(ctx context.Context, reg *release.Registry, digest v1.Hash) (v1.Image, error) {
	return reg.Signature(ctx, digest)
}
