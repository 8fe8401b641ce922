package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/release"
)

type serveFlags struct {
	boot        bootFlags
	dynamicPool bool
}

func newServeCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use: "serve",
		Example: `  # As the installed unit runs it (systemctl status racker-serve):
  racker serve --log-format json
  # By hand, serving the test OS:
  racker serve --os testos`,
		Short: "Run the boot services (DHCP, TFTP, HTTP) on the PXE interface until stopped",
		Long: `Run Racker's boot services on the rack's internal network: DHCP with a fixed
address for every node and BMC of the plan, TFTP for the iPXE binaries, and HTTP
for iPXE scripts, Ignition configs, OS images and the event API.

The PXE interface is brought up and given the management node's planned
address first. Stops gracefully on SIGTERM or SIGINT; SIGHUP re-reads
nodes.csv (new nodes get their addresses without a restart).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), env, &pf, &sf)
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addBootFlags(cmd.Flags(), &sf.boot)
	cmd.Flags().BoolVar(&sf.dynamicPool, "dynamic-pool", false, "give machines that are not in nodes.csv an address from the upper half of the subnet")
	return cmd
}

func runServe(ctx context.Context, env *Env, pf *PlanFlags, sf *serveFlags) error {
	inv, p, err := env.MakePlan(pf, true)
	if err != nil {
		return err
	}
	if inv.PXEInterface == "" {
		return fmt.Errorf("serve: no local interface has the management node's secondary MAC %s; is this the management node? (--pxe-interface names the interface)", inv.Mgmt().SecondaryMAC)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env.notifySystemd("STATUS=preparing the PXE interface and the OS release (a first Flatcar download takes minutes)")
	svc, _, err := openBootServices(ctx, env, inv, p, &sf.boot, func(c *bootsvc.Config) { c.DynamicPool = sf.dynamicPool })
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	reloadOnHangup(ctx, env, pf, svc.Reload)
	// The sockets are open: clients are queued from now on.
	env.notifySystemd("READY=1\nSTATUS=serving DHCP, TFTP and HTTP on " + inv.PXEInterface)
	err = svc.Serve(ctx)
	env.notifySystemd("STOPPING=1")
	return err
}

// ipxeDir is the folder of iPXE binaries the boot services serve over TFTP
// and HTTP: --tftp-root when given, else share/ipxe of Racker's own
// payload, the one the running racker belongs to (release.PayloadDir) or
// else the installed current version. Racker never assumes the host has
// iPXE (Debian's /usr/lib/ipxe): a Flatcar management node has none.
func (e *Env) ipxeDir(flag string) (string, error) {
	dir, from := flag, "--tftp-root"
	if dir == "" {
		if p, ok := release.PayloadDir(); ok {
			dir, from = filepath.Join(p, "share", "ipxe"), "the running racker's payload"
		} else {
			dir, from = filepath.Join(e.InstallDir, "current", "share", "ipxe"), "the installed release"
		}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("no iPXE binaries: %s (from %s) is not a folder; install Racker with its installer image (its payload carries share/ipxe), or name a folder holding undionly.kpxe and ipxe.efi with --tftp-root", dir, from)
	}
	for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			e.Logger().Warn("an iPXE binary is missing: firmware that asks for it cannot netboot", "file", filepath.Join(dir, f))
		}
	}
	return dir, nil
}

// reloadOnHangup re-reads nodes.csv and re-plans on each SIGHUP (systemctl
// reload) until ctx ends, so nodes added to the rack get their addresses
// without a restart. A plan that fails, or that reload refuses, is logged
// and the old one kept.
func reloadOnHangup(ctx context.Context, env *Env, pf *PlanFlags, reload func(*plan.Plan) error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			env.Logger().Info("SIGHUP: re-reading nodes.csv")
			env.notifySystemd(notifyReloading())
			_, p, err := env.MakePlan(pf, true)
			if err == nil {
				err = reload(p)
			}
			if err != nil {
				env.Logger().Error("plan not reloaded: keeping the current one", "err", err)
			}
			env.notifySystemd("READY=1")
		}
	}()
}
