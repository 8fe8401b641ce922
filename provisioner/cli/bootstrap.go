package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/orchestrator"
)

type bootstrapFlags struct {
	plan      PlanFlags
	prov      provisionFlags
	profile   string
	domain    string
	publicIPs string
	comp      componentFlags
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
		Example: `  # On a terminal: the wizard asks upstream Racker's questions (profile,
  # cluster name, control plane, controller type, public IPs, domain, subnet,
  # web UI, storage, backup) for whatever the flags do not say.
  racker bootstrap

  # Without questions, e.g. from a script:
  racker bootstrap --provision flatcar --cluster-name prod --on-failure exclude

  # Kubernetes with Lokomotive, static public addresses:
  racker bootstrap --provision lokomotive --domain prod.example.com --public-ips /usr/share/oem/public-ips.ini

  # Lokomotive with the web UI, rook on two storage nodes, and backups:
  racker bootstrap --provision lokomotive --web-ui --storage rook --storage-type purple --storage-nodes 2 \
    --backup-bucket racker-backups --backup-region eu-central-1 --backup-credentials /root/aws-credentials`,
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
	addComponentFlags(fs, &f.comp)
	return cmd
}

func runBootstrap(cmd *cobra.Command, env *Env, f *bootstrapFlags) error {
	ctx := cmd.Context()
	log := env.Logger()
	if env.Interactive() {
		// The wizard (wizard.go): only what is neither on the command
		// line nor saved by an earlier bootstrap or racker plan.
		if err := runWizard(env, cmd.Flags(), f); err != nil {
			return err
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
		if f.prov.boot.matchboxPort == 0 {
			return errors.New("--provision lokomotive needs the boot services' matchbox API, which --matchbox-port 0 turns off")
		}
	}
	components, err := f.comp.components()
	if err != nil {
		return err
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
	// lokoctl's lines scroll above the live view while it is up.
	above := &linesAbove{w: env.Stdout}
	input := func(svc *bootServices) cluster.Input {
		// lokoctl's Terraform reaches the boot services' embedded matchbox:
		// its HTTP endpoints under /matchbox, its gRPC API with the client
		// bundle in the state folder; its profiles name the release the
		// services serve (under /assets/flatcar/VERSION/).
		mb := cluster.DefaultMatchbox(env.StateDir, p)
		mb.Endpoint = netip.AddrPortFrom(p.Management.IP, uint16(f.prov.boot.matchboxPort)).String()
		in := cluster.Input{Plan: p, StateDir: env.StateDir, SSHPublicKey: pub, Domain: f.domain,
			PublicIPs: publicIPs, MatchboxURL: svc.nodeURL + api.MatchboxPath, Matchbox: mb, Components: components,
			Stdout: above, Logger: log}
		if rel, err := svc.client.Release(ctx); err == nil {
			in.OSVersion = rel.Version
		} else {
			log.Warn("the boot services do not say which release they serve; Lokomotive's profiles name version current", "err", err)
		}
		return in
	}
	notApplied := func(err error) error {
		return &ExitError{Code: 1, Err: fmt.Errorf("bootstrap: the %s profile was not applied: %w", profile, err)}
	}
	var loko *lokoRun
	defer func() {
		if loko != nil {
			loko.stop()
		}
	}()
	pr := &provisioning{command: "bootstrap", inv: inv, plan: p, flags: &f.prov, above: above}
	if profile == cluster.Lokomotive {
		// lokoctl first, as upstream Racker ran it: its Terraform registers
		// every node in matchbox, then waits for them; Racker PXE-boots
		// them once matchbox selects them all, so they install through
		// matchbox's profiles.
		pr.before = func(svc *bootServices) error {
			if err := lokomotiveCanVerify(ctx, svc.client); err != nil {
				return notApplied(err)
			}
			loko = startLokoctl(ctx, input(svc))
			if err := loko.waitRegistered(svc.ctx, env.Stdout, svc.client, p.Nodes, time.Second); err != nil {
				return notApplied(err)
			}
			return nil
		}
	}
	pr.after = func(svc *bootServices) error {
		var err error
		if loko != nil {
			err = loko.wait(ctx)
		} else {
			err = cluster.Apply(ctx, profile, input(svc))
		}
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
	}
	return pr.run(ctx, env)
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
