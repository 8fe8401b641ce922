package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/plan"
)

type serveFlags struct {
	boot        bootFlags
	dynamicPool bool
	ui          string // the rack view's address (ui.go)
}

func newServeCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
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
	addUIFlag(cmd, &sf.ui)
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
	view, err := startRackView(ctx, env, inv, p, sf.boot.httpPort, sf.ui)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer view.stop()
	svc, _, err := openBootServices(ctx, env, inv, p, &sf.boot, func(c *bootsvc.Config) { c.DynamicPool = sf.dynamicPool })
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	reloadOnHangup(ctx, env, pf, view.withPlan(svc.Reload))
	return svc.Serve(ctx)
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
			_, p, err := env.MakePlan(pf, true)
			if err == nil {
				err = reload(p)
			}
			if err != nil {
				env.Logger().Error("plan not reloaded: keeping the current one", "err", err)
			}
		}
	}()
}
