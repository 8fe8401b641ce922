package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/orchestrator"
)

type bootstrapFlags struct {
	plan      PlanFlags
	prov      provisionFlags
	profile   string
	domain    string
	publicIPs string
}

func newBootstrapCmd(env *Env) *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Provision every node of the rack: PXE through its BMC, install, boot from disk, bring up the cluster",
		Long: `Check the rack (as factory check), plan it, make the cluster's SSH key if
missing, make sure the boot services run (a running racker serve, or in-process),
then take every node through BMC check, PXE, install and first boot, --parallel
at a time, and run the cluster profile.

Killed at any moment, it resumes when run again: booted nodes are never
reinstalled. Progress is a live table on a terminal, log lines otherwise; the
exit status is non-zero when a node failed.

On a terminal it asks for the choices not given as flags (the wizard); the
first bootstrap saves them with the plan, and later runs reuse them (see racker
plan: --replan changes them).`,
		Example: `  # On a terminal: the wizard asks for the profile, cluster name and subnet.
  racker bootstrap

  # Without questions, e.g. from a script:
  racker bootstrap --provision flatcar --cluster-name prod --on-failure exclude

  # Kubernetes with Lokomotive, static public addresses:
  racker bootstrap --provision lokomotive --domain prod.example.com --public-ips /usr/share/oem/public-ips.ini`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.prov.osGiven = cmd.Flags().Changed("os") || cmd.Flags().Changed("os-version")
			return runBootstrap(cmd, env, &f)
		},
	}
	fs := cmd.Flags()
	AddPlanFlags(fs, &f.plan)
	addReplanFlags(fs, &f.plan)
	addProvisionFlags(fs, &f.prov)
	fs.StringVar(&f.profile, "provision", cluster.Flatcar, "cluster profile: flatcar (plain Flatcar) or lokomotive")
	fs.StringVar(&f.domain, "domain", "", "the cluster's DNS domain (default "+cluster.DefaultDomain+")")
	fs.StringVar(&f.publicIPs, "public-ips", "", "INI file of static public addresses per secondary MAC ([MAC] ip_addr= gateway= dns=, or DHCP)")
	return cmd
}

func runBootstrap(cmd *cobra.Command, env *Env, f *bootstrapFlags) error {
	ctx := cmd.Context()
	log := env.Logger()
	if env.Interactive() {
		// The wizard: only what is neither on the command line nor saved
		// by an earlier bootstrap or racker plan.
		saved, _, err := env.recallChoices(cmd.Flags())
		if err != nil {
			return err
		}
		askChoice(env, cmd, saved, "provision", "Cluster profile (flatcar or lokomotive)", &f.profile)
		askChoice(env, cmd, saved, "cluster-name", "Cluster name", &f.plan.Choices.ClusterName)
		askChoice(env, cmd, saved, "subnet", "Internal subnet", &f.plan.subnet)
		if _, ok := saved["domain"]; f.profile == cluster.Lokomotive && !ok && f.domain == "" {
			f.domain = cluster.DefaultDomain
			askChoice(env, cmd, saved, "domain", "The cluster's DNS domain", &f.domain)
		}
	}
	profile, err := cluster.ParseProfile(f.profile)
	if err != nil {
		return err
	}
	if profile == cluster.Lokomotive {
		// Before any node is touched: without lokoctl the profile cannot
		// be applied, and the error says to use --provision flatcar.
		if _, _, err := cluster.LokomotiveTools(nil); err != nil {
			return err
		}
	}
	var publicIPs cluster.PublicIPs
	if f.publicIPs != "" {
		fh, err := os.Open(f.publicIPs)
		if err != nil {
			return fmt.Errorf("--public-ips: %w", err)
		}
		publicIPs, err = cluster.ParsePublicIPs(f.publicIPs, fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("--public-ips %w", err)
		}
	}
	inv, p, err := env.CheckRack(&f.plan, true)
	if err != nil {
		return err
	}
	pub, err := ensureSSHKey(env)
	if err != nil {
		return err
	}
	if publicIPs != nil {
		if err := cluster.WritePublicIPSnippets(env.StateDir, p, publicIPs); err != nil {
			return err
		}
	}
	if len(p.Nodes) == 0 {
		fmt.Fprintln(env.Stdout, "nothing to provision: the rack has only the management node (and excluded nodes)")
		if profile == cluster.Lokomotive {
			return &ExitError{Code: 1, Err: errors.New("bootstrap: a Lokomotive cluster needs at least one node besides the management node; the lokomotive profile was not applied")}
		}
		return nil
	}
	pr := &provisioning{command: "bootstrap", inv: inv, plan: p, flags: &f.prov, after: func(bootURL string) error {
		err := cluster.Apply(ctx, profile, cluster.Input{Plan: p, StateDir: env.StateDir, SSHPublicKey: pub, Domain: f.domain,
			PublicIPs: publicIPs, MatchboxURL: bootURL, Stdout: env.Stdout, Logger: log})
		if err != nil {
			// The profile asked for was not applied: never exit 0.
			return &ExitError{Code: 1, Err: fmt.Errorf("bootstrap: every node is booted, but the %s profile was not applied: %w", profile, err)}
		}
		if profile == cluster.Lokomotive {
			var macs []string
			for _, n := range p.Nodes {
				macs = append(macs, n.PrimaryMAC)
			}
			if err := orchestrator.MarkReady(env.StateDir, macs, time.Now()); err != nil {
				return err
			}
		}
		fmt.Fprintf(env.Stdout, "bootstrap: done, %d node(s) booted (%s profile)\n", len(p.Nodes), profile)
		return nil
	}}
	return pr.run(ctx, env)
}

// askChoice asks for a flag the user did not give and the rack did not
// save, on a terminal.
func askChoice(env *Env, cmd *cobra.Command, saved map[string]string, flag, question string, v *string) {
	if _, ok := saved[flag]; ok || cmd.Flags().Changed(flag) {
		return
	}
	if a, _ := env.ask(fmt.Sprintf("%s [%s]: ", question, *v)); a != "" {
		*v = a
	}
}

func ensureSSHKey(env *Env) (string, error) {
	path := filepath.Join(env.StateDir, SSHKeyPath+".pub")
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	}
	pub, err := GenSSHKey(env.StateDir, false)
	if err != nil {
		return "", fmt.Errorf("making the cluster's SSH key: %w", err)
	}
	env.Logger().Info("made the cluster's SSH key", "path", filepath.Join(env.StateDir, SSHKeyPath))
	return pub, nil
}
