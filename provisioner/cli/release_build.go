package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/release"
)

// newReleaseCmd is the build side of releases (`make image`, `make
// image-push`); hidden, since users install releases, not build them.
func newReleaseCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use: "release",
		Example: `  make image            # racker release image --manifest release/conf.yaml …
  make image-push REGISTRY=registry.example.com/racker`,
		Short:  "Build and push Racker's installer image",
		Hidden: true,
	}
	cmd.AddCommand(newReleaseImageCmd(env), newReleasePushCmd(env), newReleaseKeygenCmd(env), newReleaseDocsCmd(env))
	return cmd
}

func newReleaseImageCmd(env *Env) *cobra.Command {
	var manifest, version, registry, out, cache, changes, signKey string
	var with []string
	var push bool
	cmd := &cobra.Command{
		Use: "image",
		Example: `  racker release image --manifest release/conf.yaml --version 1.2.0
  racker release image --manifest release/conf.yaml --version 1.2.0 --registry registry.example.com/racker --push`,
		Short: "Build the installer image from the payload manifest into an OCI archive",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := release.LoadManifest(manifest)
			if err != nil {
				return err
			}
			if signKey == "" {
				return errors.New("release image: --sign-key FILE is required: releases are signed (racker release keygen makes a key; make image uses SIGN_KEY, bin/release-signing.pem)")
			}
			key, err := release.ReadSigningKey(signKey)
			if err != nil {
				return err
			}
			pub, err := release.PublicKeyPEM(key)
			if err != nil {
				return err
			}
			v := SemverFromDescribe(version)
			if out == "" {
				out = filepath.Join("bin", "racker-"+v+".oci.tar")
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			work, err := os.MkdirTemp("", "racker-image-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			img, info, err := release.Build(cmd.Context(), release.BuildOptions{
				Manifest: m, Version: v, Registry: registry, Enable: with, Changelog: changes, SigningKey: pub,
				CacheDir: cache, Output: env.Stderr, Logger: env.Logger(),
			}, work)
			if err != nil {
				return fmt.Errorf("building the installer image %s: %w", v, err)
			}
			repo := info.Registry
			d, err := img.Digest()
			if err != nil {
				return fmt.Errorf("building the installer image %s: %w", v, err)
			}
			sig, err := release.Sign(d, repo, key)
			if err != nil {
				return err
			}
			if err := release.WriteSignedOCIArchive(img, sig, repo, v, out); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "signed %s with %s (cosign format, %s)\n", d, release.KeyID(&key.PublicKey), release.SignatureTag(d))
			fmt.Fprintf(env.Stdout, "%s: racker %s (%s), modules %s, %s\n", out, v, d, strings.Join(info.Modules, ","), registryNote(repo))
			if !push {
				return nil
			}
			if registry == "" {
				return errors.New("release image --push: --registry HOST[:PORT]/REPO is required")
			}
			reg, err := release.OpenRegistry(registry)
			if err != nil {
				return err
			}
			if err := reg.Push(cmd.Context(), img, v); err != nil {
				return err
			}
			if err := reg.PushSignature(cmd.Context(), sig, d); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "pushed %s:%s (%s) and its signature\n", reg, v, d)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&manifest, "manifest", "release/conf.yaml", "payload manifest")
	f.StringVar(&version, "version", Version, "release version: semver, or `git describe` output (made a 0.0.0 pre-release when not semver)")
	f.StringVar(&registry, "registry", "", "registry HOST[:PORT]/REPO recorded as the release's update source (default: the manifest's)")
	f.StringSliceVar(&with, "with", nil, "optional modules to include (lokoctl, terraform: built from source)")
	f.StringVar(&out, "out", "", "OCI archive to write (default bin/racker-VERSION.oci.tar)")
	f.BoolVar(&push, "push", false, "also push the image to --registry, tagged with its version")
	f.StringVar(&changes, "changelog", "", "changelog whose section for the version goes into the image (default: the manifest's, CHANGELOG.md)")
	f.StringVar(&signKey, "sign-key", "", "ECDSA P-256 private key (PKCS#8 PEM) that signs the image; its public key ships in the release")
	f.StringVar(&cache, "cache", filepath.Join(os.TempDir(), "racker-release-cache"), "download cache for pinned assets")
	return cmd
}

func newReleaseKeygenCmd(env *Env) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "keygen",
		Example: `  racker release keygen --out bin/release-signing.pem   # make image does this on first use
  racker release image --manifest release/conf.yaml --version 1.2.0 --sign-key bin/release-signing.pem`,
		Short: "Make a release signing key pair (ECDSA P-256: FILE and FILE's name with .pub)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("keygen: %s exists; not replacing a signing key", out)
			}
			pub, err := release.GenerateKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s (private, keep it safe) and %s\n", out, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "bin/release-signing.pem", "private key file to write")
	return cmd
}

func registryNote(repo string) string {
	if repo == "" {
		return "no default registry"
	}
	return "updates from " + repo
}

func newReleasePushCmd(env *Env) *cobra.Command {
	var registry string
	cmd := &cobra.Command{
		Use:     "push FILE.oci.tar",
		Example: `  racker release push bin/racker-1.2.0.oci.tar --registry registry.example.com/racker`,
		Short:   "Push an installer image archive to a registry, tagged with its version",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if registry == "" {
				return errors.New("push: --registry HOST[:PORT]/REPO is required")
			}
			img, sig, closeFn, err := release.OpenSignedOCIArchive(args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			info, err := release.ImageInfo(img)
			if err != nil {
				return err
			}
			reg, err := release.OpenRegistry(registry)
			if err != nil {
				return err
			}
			if err := reg.Push(cmd.Context(), img, info.Version); err != nil {
				return err
			}
			d, _ := img.Digest()
			if sig != nil {
				if err := reg.PushSignature(cmd.Context(), sig, d); err != nil {
					return err
				}
			}
			fmt.Fprintf(env.Stdout, "pushed %s:%s (%s)\n", reg, info.Version, d)
			return nil
		},
	}
	cmd.Flags().StringVar(&registry, "registry", "", "registry HOST[:PORT]/REPO")
	return cmd
}

// SemverFromDescribe turns `git describe --tags --always --dirty` output
// into a release version: v1.2.3 → 1.2.3, v1.2.3-4-gabc → 1.2.3-4-gabc (a
// pre-release, which update/upgrade skip), a bare commit abc123 →
// 0.0.0-abc123.
func SemverFromDescribe(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if _, err := release.ParseVersion(s); err == nil {
		return s
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
	if clean == "" {
		clean = "dev"
	}
	return "0.0.0-" + clean
}
