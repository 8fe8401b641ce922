package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/status"
)

func newStatusCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var output, bootURL string
	var watch bool
	var interval time.Duration
	var httpPort int
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node: role, BMC, power, boot device, phase, OS, address, last event",
		Long: `Show each node's provisioning state as Racker recorded it, with the boot
services' newer observations when they answer. It reads the state without
locking it, so it works while racker bootstrap runs.

-o json prints {"nodes": [{"primary_mac", "hostname", "role", "phase",
"phase_since", "bmc_reachable", "power", "boot_device", "os", "ip",
"last_event", "last_event_at", "install_generation", "reason",
"last_error", "failures"}]}; reason, last_error and failures only when set.
The phases are in docs/phases.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			for {
				st, err := collectStatus(cmd.Context(), env, &pf, bootURL, httpPort)
				if err != nil {
					return err
				}
				if watch && env.Interactive() {
					fmt.Fprint(env.Stdout, "\x1b[H\x1b[2J")
				}
				if output == "json" {
					enc := json.NewEncoder(env.Stdout)
					if !watch {
						enc.SetIndent("", "  ")
					}
					if err := enc.Encode(st); err != nil {
						return err
					}
				} else if err := writeStatusTable(env.Stdout, st.Nodes, time.Now()); err != nil {
					return err
				}
				if !watch {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
				if !env.Interactive() && output == "table" {
					fmt.Fprintln(env.Stdout)
				}
			}
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	cmd.Flags().StringVar(&bootURL, "boot-services", "", "URL of the boot services' management views (default http://127.0.0.1:HTTP-PORT)")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port of the boot services")
	return cmd
}

// collectStatus asks the status package for the merged view: the plan
// (a dry run: status never writes), the orchestrator's records, and the
// boot services when they answer within a second.
func collectStatus(ctx context.Context, env *Env, pf *PlanFlags, bootURL string, httpPort int) (status.Status, error) {
	src := status.Sources{StateDir: env.StateDir, Logger: env.Logger()}
	if _, p, err := env.MakePlan(pf, false); err == nil {
		src.Plan = p
		if bootURL == "" {
			bootURL = managementURL(httpPort)
		}
		src.Boot = api.NewClient(bootURL)
	} else {
		env.Logger().Debug("no plan: showing the recorded state only", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return status.Collect(ctx, src)
}
