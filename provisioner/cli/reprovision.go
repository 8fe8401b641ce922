package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

func newReprovisionCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var f provisionFlags
	var all, yes, noWait bool
	cmd := &cobra.Command{
		Use: "reprovision NODE...|--all",
		Example: `  racker reprovision racker-worker-0
  racker reprovision racker-controller-0 --yes
  racker reprovision --all --yes --no-wait`,
		Short: "Wipe every disk of the chosen nodes and install them again; other nodes are untouched",
		Long: `Reinstall nodes through the same state machine as bootstrap: a new install
generation at the boot services (with wipe-all: every disk of the node is wiped,
so an old OS on another disk cannot win the next boot), PXE, install, boot from
disk. NODE is a primary MAC, BMC MAC, hostname or plan index.

Asks before touching a controller unless --yes. Waits and shows progress until
the nodes are booted again; --no-wait returns once they netboot (it needs a
running racker serve, which carries on without this command).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.osGiven = cmd.Flags().Changed("os") || cmd.Flags().Changed("os-version")
			if all == (len(args) > 0) {
				return errors.New("name the NODEs to reprovision, or --all (not both)")
			}
			inv, p, err := env.MakePlan(&pf, true)
			if err != nil {
				return err
			}
			var chosen []plan.Node
			if all {
				chosen = p.Nodes
			}
			for _, a := range args {
				n, ok := p.Find(a)
				switch {
				case !ok:
					return fmt.Errorf("node %q: not in the rack (give a primary MAC, BMC MAC, hostname or plan index; see racker plan)", a)
				case n.Role == plan.Management:
					return fmt.Errorf("node %q is the management node: Racker runs there", a)
				case n.Role == plan.Excluded:
					return fmt.Errorf("node %q is excluded (--exclude); drop it from --exclude first", a)
				}
				chosen = append(chosen, n)
			}
			if len(chosen) == 0 {
				return errors.New("no nodes to reprovision")
			}
			var ctrl []string
			only := map[string]bool{}
			var macs []string
			for _, n := range chosen {
				if !only[n.PrimaryMAC] {
					only[n.PrimaryMAC] = true
					macs = append(macs, n.PrimaryMAC)
				}
				if n.Role == plan.Controller {
					ctrl = append(ctrl, n.Hostname)
				}
			}
			if len(ctrl) > 0 && !yes {
				if !env.Interactive() {
					return fmt.Errorf("reprovision would wipe controller(s) %s; not on a terminal, so pass --yes to confirm", strings.Join(ctrl, ", "))
				}
				answer, _ := env.ask(fmt.Sprintf("This wipes controller(s) %s and every disk of %d node(s). Continue? [y/N] ", strings.Join(ctrl, ", "), len(macs)))
				if a := strings.ToLower(answer); a != "y" && a != "yes" {
					return &ExitError{Code: 1, Err: errors.New("reprovision: cancelled")}
				}
			}
			pr := &provisioning{command: "reprovision", inv: inv, plan: p, only: only, flags: &f, noWait: noWait,
				before: func(*bootServices) error { return orchestrator.MarkReprovision(env.StateDir, macs, time.Now()) }}
			if noWait {
				pr.stopAt = orchestrator.PXERequested
			}
			if err := pr.run(cmd.Context(), env); err != nil {
				return err
			}
			if noWait {
				fmt.Fprintf(env.Stdout, "reprovision: PXE requested for %d node(s); racker serve carries on, racker status shows their progress\n", len(macs))
				return nil
			}
			fmt.Fprintf(env.Stdout, "reprovision: %d node(s) reinstalled and booted\n", len(macs))
			return nil
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addProvisionFlags(cmd.Flags(), &f)
	cmd.Flags().BoolVar(&all, "all", false, "reprovision every node")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask before wiping a controller")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the nodes netboot (needs a running racker serve)")
	return cmd
}
