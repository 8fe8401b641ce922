package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/release"
)

// Version is set at build time (-ldflags "-X …/cli.Version=1.2.3").
var Version = "dev"

// showOffer prints the changes an offered release brings; the check goes
// on (with a note) when they cannot be read.
func showOffer(ctx context.Context, w io.Writer, reg *release.Registry, installed, version string) {
	o, err := fetchOffer(ctx, reg, version)
	if err != nil {
		fmt.Fprintf(w, "  (changes unavailable: %v)\n", err)
		return
	}
	printChanges(w, installed, o)
}

func newVersionCmd(env *Env) *cobra.Command {
	var rf releaseFlags
	var check bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print Racker's version, the installed release and (--check) whether a newer one exists",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			commit := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						commit = " " + s.Value
					}
				}
			}
			fmt.Fprintf(env.Stdout, "racker %s%s (%s)\n", Version, commit, runtime.Version())
			in := env.installer(rf.root)
			cur, err := in.Current()
			if err != nil {
				fmt.Fprintf(env.Stdout, "installed: none in %s\n", in.Layout.CurrentLink())
			} else {
				fmt.Fprintf(env.Stdout, "installed: %s in %s\n", cur.Version, in.Layout.VersionDir(cur.Version))
				if prev, err := in.Previous(); err == nil {
					fmt.Fprintf(env.Stdout, "previous: %s (racker rollback)\n", prev.Version)
				}
			}
			reg := rf.registry
			if reg == "" && cur != nil {
				reg = cur.Registry
			}
			if reg == "" {
				reg = "none (pass --registry)"
			}
			fmt.Fprintf(env.Stdout, "registry: %s\n", reg)
			if !check {
				return nil
			}
			installed := Version
			if cur != nil {
				installed = cur.Version
			}
			r, err := env.registry(in, rf.registry)
			if err != nil {
				return err
			}
			tags, err := r.Versions(cmd.Context())
			if err != nil {
				return err
			}
			upd, err := release.Pick(tags, installed, release.SameMinor)
			if err != nil {
				return err
			}
			upg, _ := release.Pick(tags, installed, release.Newest)
			switch {
			case newer(upd, installed):
				fmt.Fprintf(env.Stdout, "update available: %s (racker update)\n", upd)
				showOffer(cmd.Context(), env.Stdout, r, installed, upd)
			default:
				fmt.Fprintln(env.Stdout, "update: none, up to date")
			}
			if newer(upg, installed) && upg != upd {
				how := ""
				if crossesMajor(installed, upg) {
					how = ", a major version: it asks first"
				}
				fmt.Fprintf(env.Stdout, "upgrade available: %s (racker upgrade%s)\n", upg, how)
				showOffer(cmd.Context(), env.Stdout, r, installed, upg)
			} else {
				fmt.Fprintln(env.Stdout, "upgrade: none")
			}
			return nil
		},
	}
	addReleaseFlags(cmd, &rf, true)
	cmd.Flags().BoolVar(&check, "check", false, "ask the registry whether an update or upgrade is available")
	return cmd
}
