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

// versionInfo is racker version -o json|yaml.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Go        string `json:"go"`
	Installed string `json:"installed,omitempty"` // the installed release, when there is one
	// InstalledDir is where it is installed.
	InstalledDir string `json:"installed_dir,omitempty"`
	Previous     string `json:"previous,omitempty"` // what racker rollback returns to
	Registry     string `json:"registry,omitempty"`
	// Update and Upgrade are the releases --check found ("" when none).
	Update  string `json:"update,omitempty"`
	Upgrade string `json:"upgrade,omitempty"`
	Checked bool   `json:"checked,omitempty"`
}

func newVersionCmd(env *Env) *cobra.Command {
	var rf releaseFlags
	var check bool
	var out output
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print Racker's version, the installed release and (--check) whether a newer one exists",
		Example: `  racker version
  racker version --check
  racker version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			v := versionInfo{Version: Version, Go: runtime.Version()}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v.Commit = s.Value
					}
				}
			}
			in := env.installer(rf.root)
			cur, err := in.Current()
			if err == nil {
				v.Installed, v.InstalledDir = cur.Version, in.Layout.VersionDir(cur.Version)
				if prev, err := in.Previous(); err == nil {
					v.Previous = prev.Version
				}
			}
			v.Registry = rf.registry
			if v.Registry == "" && cur != nil {
				v.Registry = cur.Registry
			}
			var r *release.Registry
			installed := Version
			if check {
				if cur != nil {
					installed = cur.Version
				}
				if r, err = env.registry(in, rf.registry); err != nil {
					return err
				}
				tags, err := r.Versions(cmd.Context())
				if err != nil {
					return err
				}
				v.Checked = true
				upd, err := release.Pick(tags, installed, release.SameMinor)
				if err != nil {
					return err
				}
				if newer(upd, installed) {
					v.Update = upd
				}
				if upg, _ := release.Pick(tags, installed, release.Newest); newer(upg, installed) && upg != upd {
					v.Upgrade = upg
				}
			}
			return out.print(env.Stdout, view{value: v, names: func() []string { return []string{v.Version} },
				table: func(w io.Writer, wide bool) error {
					commit := ""
					if v.Commit != "" {
						commit = " " + v.Commit
					}
					fmt.Fprintf(w, "racker %s%s (%s)\n", v.Version, commit, v.Go)
					if v.Installed == "" {
						fmt.Fprintf(w, "installed: none in %s\n", in.Layout.CurrentLink())
					} else {
						fmt.Fprintf(w, "installed: %s in %s\n", v.Installed, v.InstalledDir)
						if v.Previous != "" {
							fmt.Fprintf(w, "previous: %s (racker rollback)\n", v.Previous)
						}
					}
					fmt.Fprintf(w, "registry: %s\n", dashOr(v.Registry, "none (pass --registry)"))
					if !v.Checked {
						return nil
					}
					if v.Update != "" {
						fmt.Fprintf(w, "update available: %s (racker update)\n", v.Update)
						showOffer(cmd.Context(), w, r, installed, v.Update)
					} else {
						fmt.Fprintln(w, "update: none, up to date")
					}
					if v.Upgrade != "" {
						how := ""
						if crossesMajor(installed, v.Upgrade) {
							how = ", a major version: it asks first"
						}
						fmt.Fprintf(w, "upgrade available: %s (racker upgrade%s)\n", v.Upgrade, how)
						showOffer(cmd.Context(), w, r, installed, v.Upgrade)
					} else {
						fmt.Fprintln(w, "upgrade: none")
					}
					return nil
				}})
		},
	}
	addReleaseFlags(cmd, &rf, true)
	cmd.Flags().BoolVar(&check, "check", false, "ask the registry whether an update or upgrade is available")
	addOutputFlag(cmd, &out)
	return cmd
}

func dashOr(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
