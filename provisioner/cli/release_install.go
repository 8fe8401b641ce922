package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/release"
)

// releaseFlags are the flags every release command shares.
type releaseFlags struct {
	root     string
	registry string
	trustKey string
}

func addReleaseFlags(cmd *cobra.Command, rf *releaseFlags, withRegistry bool) {
	cmd.Flags().StringVar(&rf.root, "root", "", "install into the host tree under DIR (DIR/opt/racker, DIR/opt/bin, …) instead of /; systemd is left alone")
	cmd.Flags().StringVar(&rf.trustKey, "trust-key", "", "public key (PEM) the release must be signed with (default: the key the installed release pins; on a first install, the key the release ships)")
	if withRegistry {
		cmd.Flags().StringVar(&rf.registry, "registry", "", "release registry HOST[:PORT]/REPO (default: the installed release's); loopback is plain HTTP, anything else HTTPS")
	}
}

// installer builds the installer for the host tree under root ("" = this
// host, with its systemd).
func (e *Env) installer(root string) *release.Installer {
	in := &release.Installer{
		Layout: release.DefaultLayout(root, e.InstallDir, e.StateDir),
		Logger: e.Logger(),
	}
	if root == "" || filepath.Clean(root) == "/" {
		in.Services = release.Systemctl{}
	}
	if e.Interactive() {
		in.Progress = e.Stderr
	}
	return in
}

// registry opens --registry, or the registry the installed release names.
func (e *Env) registry(in *release.Installer, flag string) (*release.Registry, error) {
	ref := flag
	if ref == "" {
		if cur, err := in.Current(); err == nil {
			ref = cur.Registry
		}
	}
	return release.OpenRegistry(ref)
}

// currentOrHint describes the installed version, or says how to install one.
func currentOrHint(in *release.Installer) (*release.Info, error) {
	cur, err := in.Current()
	if err != nil {
		return nil, fmt.Errorf("no Racker installed in %s (%w): run `racker get VERSION --registry …` or the installer image", in.Layout.CurrentLink(), err)
	}
	return cur, nil
}

// fetchAndInstall pulls version from reg, checks it and installs it.
func (e *Env) fetchAndInstall(ctx context.Context, in *release.Installer, reg *release.Registry, version, trustKey string, opts release.Options) error {
	img, digest, err := reg.Image(ctx, version)
	if err != nil {
		return err
	}
	return e.verifyAndInstall(ctx, in, reg, img, digest, version, trustKey, opts)
}

// verifyAndInstall checks a release from reg (verifyRelease) and installs it.
func (e *Env) verifyAndInstall(ctx context.Context, in *release.Installer, reg *release.Registry, img v1.Image, digest v1.Hash,
	version, trustKey string, opts release.Options) error {
	sig, err := fetchSignature(ctx, reg, digest)
	if err != nil {
		return err
	}
	by, err := e.verifyRelease(in, img, sig, digest, version, trustKey)
	if err != nil {
		return err
	}
	return e.installImage(ctx, in, img, digest, by, opts)
}

func (e *Env) installImage(ctx context.Context, in *release.Installer, img v1.Image, digest v1.Hash, verifiedBy string, opts release.Options) error {
	res, err := in.Install(ctx, release.Source{Image: img, Digest: digest.String(), VerifiedBy: verifiedBy}, opts)
	if err != nil {
		return err
	}
	printResult(e.Stdout, res, digest.String())
	return nil
}

func printResult(w io.Writer, res *release.Result, digest string) {
	switch {
	case res.From == "":
		fmt.Fprintf(w, "racker %s installed", res.To)
	case res.Changed:
		fmt.Fprintf(w, "racker %s installed (was %s; `racker rollback` returns to it)", res.To, res.From)
	default:
		fmt.Fprintf(w, "racker %s reinstalled", res.To)
	}
	if digest != "" {
		fmt.Fprintf(w, " from %s", digest)
	}
	fmt.Fprintln(w)
	for _, u := range res.Started {
		fmt.Fprintf(w, "enabled and started %s\n", u)
	}
	for _, u := range res.Restarted {
		fmt.Fprintf(w, "restarted %s\n", u)
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func newInstallCmd(env *Env) *cobra.Command {
	var rf releaseFlags
	var from, image string
	cmd := &cobra.Command{
		Use: "install",
		Example: `  # On the management node, from the installer image:
  docker run --rm --privileged --pid host registry.example.com/racker:1.2.0
  # From an archive or an unpacked payload:
  racker install --image bin/racker-1.2.0.oci.tar`,
		Short: "Install this Racker release onto the host (the installer image's default command)",
		Long: `Install a Racker release: unpack it into <install-dir>/versions/VERSION, switch
<install-dir>/current to it atomically, link /opt/bin/racker, and install the
systemd units: a first install enables and starts racker-serve, a later one
restarts it. The previous version is kept for 'racker rollback'.

In the installer image (docker run --rm --privileged --pid host IMAGE) it
installs its own payload onto the host through /proc/1/root and runs the
host's systemctl in the host's namespaces. Elsewhere, --image installs an
OCI archive (bin/racker-VERSION.oci.tar), --from an unpacked payload folder.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := rf.root
			inContainer := false
			if root == "" {
				host, err := release.DetectHost()
				if err != nil {
					return err
				}
				root, inContainer = host.Root, host.InContainer
			}
			in := env.installer(root)
			if inContainer {
				in.Services = release.Systemctl{Chroot: root}
				in.HostChroot = true
			}
			var src release.Source
			switch {
			case image != "" && from != "":
				return errors.New("install: pass --image or --from, not both")
			case image != "":
				img, sig, closeFn, err := release.OpenSignedOCIArchive(image)
				if err != nil {
					return err
				}
				defer closeFn()
				d, err := img.Digest()
				if err != nil {
					return fmt.Errorf("reading %s: %w", image, err)
				}
				by, err := env.verifyRelease(in, img, sig, d, "", rf.trustKey)
				if err != nil {
					return err
				}
				src = release.Source{Image: img, Digest: d.String(), VerifiedBy: by}
			case from != "":
				src = release.Source{Dir: from}
			default:
				dir, ok := release.PayloadDir()
				if !ok {
					return errors.New("install: this racker is not part of a release payload; pass --image FILE.oci.tar or --from DIR, or use `racker get VERSION`")
				}
				src = release.Source{Dir: dir}
			}
			res, err := in.Install(cmd.Context(), src, release.Options{Migrate: true})
			if err != nil {
				return err
			}
			printResult(env.Stdout, res, src.Digest)
			return nil
		},
	}
	addReleaseFlags(cmd, &rf, false)
	cmd.Flags().StringVar(&from, "from", "", "install the unpacked payload in DIR")
	cmd.Flags().StringVar(&image, "image", "", "install the release in an OCI archive (make image writes bin/racker-VERSION.oci.tar)")
	return cmd
}

func newGetCmd(env *Env) *cobra.Command {
	var rf releaseFlags
	cmd := &cobra.Command{
		Use:     "get VERSION",
		Example: `  racker get 1.2.0`,
		Short:   "Install a given Racker release from the registry",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := release.ParseVersion(args[0]); err != nil {
				return err
			}
			in := env.installer(rf.root)
			reg, err := env.registry(in, rf.registry)
			if err != nil {
				return err
			}
			return env.fetchAndInstall(cmd.Context(), in, reg, args[0], rf.trustKey, release.Options{Migrate: true})
		},
	}
	addReleaseFlags(cmd, &rf, true)
	return cmd
}

// newMoveCmd builds update and upgrade, which differ in the release they
// pick and in whether they may migrate state. Both show the offered
// release's changelog since the installed version before they act; upgrade
// then asks before crossing a major version or migrating the state.
func newMoveCmd(env *Env, use, short string, policy release.Policy) *cobra.Command {
	var rf releaseFlags
	var yes bool
	long := short + `.

It first prints the offered release's changelog (CHANGELOG.md, carried in the
release image) from the installed version on, then installs it.`
	if policy == release.Newest {
		long += `

Before crossing a major version, or migrating the state (after which rollback
to the installed version is refused), it lists the breaking changes and the
migrations and asks on a terminal; without one it refuses unless --yes.`
	}
	cmd := &cobra.Command{
		Use: use,
		Example: `  racker ` + use + `
  racker ` + use + ` --registry registry.example.com/racker`,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := env.installer(rf.root)
			cur, err := currentOrHint(in)
			if err != nil {
				return err
			}
			reg, err := env.registry(in, rf.registry)
			if err != nil {
				return err
			}
			tags, err := reg.Versions(cmd.Context())
			if err != nil {
				return err
			}
			target, err := release.Pick(tags, cur.Version, policy)
			if err != nil {
				return err
			}
			if target == "" || !newer(target, cur.Version) {
				fmt.Fprintf(env.Stdout, "racker %s is up to date (%s has nothing newer for %s)\n", cur.Version, reg, use)
				return nil
			}
			o, err := fetchOffer(cmd.Context(), reg, target)
			if err != nil {
				return err
			}
			printChanges(env.Stdout, cur.Version, o)
			if policy == release.Newest {
				if err := env.confirmUpgrade(in, cur, o, yes); err != nil {
					return err
				}
			}
			return env.verifyAndInstall(cmd.Context(), in, reg, o.img, o.digest, target, rf.trustKey, release.Options{Migrate: policy == release.Newest})
		},
	}
	addReleaseFlags(cmd, &rf, true)
	if policy == release.Newest {
		cmd.Flags().BoolVar(&yes, "yes", false, "do not ask before crossing a major version or migrating the state")
	}
	return cmd
}

func newer(a, b string) bool {
	va, err1 := release.ParseVersion(a)
	vb, err2 := release.ParseVersion(b)
	return err1 == nil && err2 == nil && va.GreaterThan(vb)
}

func newUpdateCmd(env *Env) *cobra.Command {
	return newMoveCmd(env, "update", "Install the newest release with the installed major.minor (compatible fixes)", release.SameMinor)
}

func newUpgradeCmd(env *Env) *cobra.Command {
	return newMoveCmd(env, "upgrade", "Install the newest release overall (may be breaking; migrates state)", release.Newest)
}

func newRollbackCmd(env *Env) *cobra.Command {
	var rf releaseFlags
	cmd := &cobra.Command{
		Use:     "rollback",
		Example: `  racker rollback`,
		Short:   "Return to the previously installed Racker version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := env.installer(rf.root).Rollback(cmd.Context())
			if err != nil {
				return err
			}
			printResult(env.Stdout, res, "")
			return nil
		},
	}
	addReleaseFlags(cmd, &rf, false)
	return cmd
}
