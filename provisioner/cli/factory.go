package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

func newFactoryCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use: "factory",
		Example: `  racker factory check
  racker factory gen-ssh-key
  racker factory reset --yes`,
		Short: "Check the rack's OEM files, reset the rack, make the cluster's SSH key",
	}
	cmd.AddCommand(newFactoryCheckCmd(env), newFactoryResetCmd(env), newGenSSHKeyCmd(env), newDiscoverCmd(env))
	return cmd
}

func newFactoryCheckCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	cmd := &cobra.Command{
		Use: "check",
		Example: `  racker factory check
  racker factory check --oem-dir ./my-rack`,
		Short: "Validate nodes.csv and the IPMI credentials; print a summary of the rack",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, err := env.CheckRack(&pf, false)
			return err
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	return cmd
}

// CheckRack plans the rack as factory check does: every problem of the OEM
// files goes to stderr at once (the returned error then says nothing more),
// and a valid rack's summary to stdout.
func (e *Env) CheckRack(pf *PlanFlags, persist bool) (*inventory.Inventory, *plan.Plan, error) {
	inv, p, err := e.MakePlan(pf, persist)
	if err != nil {
		var probs *inventory.Problems
		if errors.As(err, &probs) {
			fmt.Fprintf(e.Stderr, "%s: %d problem(s):\n", filepath.Join(e.OEMDir, inventory.NodesFile), len(*probs))
			for _, p := range *probs {
				fmt.Fprintln(e.Stderr, "  "+p.String())
			}
			return nil, nil, errSilent
		}
		return nil, nil, err
	}
	printRackSummary(e, inv, p)
	return inv, p, nil
}

func printRackSummary(env *Env, inv *inventory.Inventory, p *plan.Plan) {
	w := env.Stdout
	mgmt := inv.Mgmt()
	fmt.Fprintf(w, "rack OK: %s\n", filepath.Join(inv.Dir, inventory.NodesFile))
	fmt.Fprintf(w, "management node: %s (line %d), type %s\n", mgmt.PrimaryMAC, mgmt.Line, mgmt.Type)
	pxe := inv.PXEInterface
	if pxe == "" {
		pxe = "not on this machine"
	}
	fmt.Fprintf(w, "PXE interface: %s (secondary MAC %s)\n", pxe, mgmt.SecondaryMAC)
	counts := map[string]int{}
	for _, n := range inv.Others() {
		counts[n.Type]++
	}
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(w, "nodes: %d besides the management node\n", len(inv.Others()))
	for _, t := range types {
		fmt.Fprintf(w, "  %-12s %d\n", t, counts[t])
	}
	ctrl := p.Controllers()
	names := make([]string, len(ctrl))
	for i, n := range ctrl {
		names[i] = n.PrimaryMAC + " (" + n.Type + ")"
	}
	fmt.Fprintf(w, "controllers: %d: %s\n", len(ctrl), strings.Join(names, ", "))
	fmt.Fprintf(w, "workers: %d\n", len(p.Workers()))
	if len(p.Excluded) > 0 {
		fmt.Fprintf(w, "excluded: %d\n", len(p.Excluded))
	}
}

func newFactoryResetCmd(env *Env) *cobra.Command {
	var nodes, yes bool
	cmd := &cobra.Command{
		Use: "reset",
		Example: `  # Forget the plan, leases and provisioning state (asks first):
  racker factory reset
  # And the rack's rows too, without asking:
  racker factory reset --nodes --yes`,
		Short: "Forget the rack's state (and with --nodes, its nodes)",
		Long: `Clear Racker's state folder: plans, leases, provisioning state, keys.
With --nodes, nodes.csv is left with only its header. Asks first on a terminal;
without a terminal it refuses unless --yes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "the state in " + env.StateDir
			if nodes {
				what += " and every row of " + filepath.Join(env.OEMDir, inventory.NodesFile)
			}
			if !yes {
				if !env.Interactive() {
					return fmt.Errorf("factory reset would delete %s; not on a terminal, so pass --yes to confirm", what)
				}
				fmt.Fprintf(env.Stdout, "This deletes %s. Continue? [y/N] ", what)
				answer, _ := bufio.NewReader(env.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return &ExitError{Code: 1, Err: errors.New("factory reset: cancelled")}
				}
			}
			if err := clearDir(env.StateDir); err != nil {
				return fmt.Errorf("factory reset: %w", err)
			}
			if nodes {
				path := filepath.Join(env.OEMDir, inventory.NodesFile)
				if err := os.WriteFile(path, []byte(inventory.Header+"\n"), 0o644); err != nil {
					return fmt.Errorf("factory reset: %w", err)
				}
			}
			fmt.Fprintf(env.Stdout, "reset: deleted %s\n", what)
			return nil
		},
	}
	cmd.Flags().BoolVar(&nodes, "nodes", false, "also forget the rack's nodes (nodes.csv keeps only its header)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

// clearDir removes everything inside dir, keeping dir itself.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
