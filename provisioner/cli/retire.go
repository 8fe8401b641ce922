package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

type retireFlags struct {
	coolDown time.Duration
	force    bool
	yes      bool
	wipe     bool
	prov     provisionFlags // for --wipe's install; --bmc-driver and --boot-services always
}

func newRetireCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var f retireFlags
	cmd := &cobra.Command{
		Use:   "retire NODE",
		Short: "Take a server out of the rack: power it off through its BMC, remove it from nodes.csv, the plan and the boot services",
		Long: `Retire a server: Racker powers it off through its BMC, turns its row of
nodes.csv into a comment (the file is rewritten atomically), forgets it in the
provisioning state (racker status no longer shows it), and makes the boot
services drop its leases and targets and refuse its MACs from then on: powered
on again, it gets no address and no netboot. Its addresses stay reserved for
--cool-down, so a server added meanwhile does not take them; its hostname is
free at once. No other node's hostname or address changes.

NODE is a hostname, primary MAC, BMC MAC or plan index. A controller is only
retired with --yes. When its BMC does not answer (a dead server), --force
retires it without powering it off. Interrupted, it finishes when run again.
Putting the row back in nodes.csv brings the server back as a new node.`,
		Example: `  racker retire racker-worker-3
  racker retire 00:11:22:33:44:20 --cool-down 1h
  racker retire racker-worker-5 --force   # its BMC is dead
  racker retire racker-worker-4 --wipe    # its disks leave the building`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.prov.osGiven = cmd.Flags().Changed("os") || cmd.Flags().Changed("os-version")
			if f.wipe && f.force {
				return usageErrorf("--wipe needs the server's BMC, --force is for a dead one: not both")
			}
			return runRetire(cmd, env, &pf, &f, args[0])
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	cmd.Flags().DurationVar(&f.coolDown, "cool-down", plan.DefaultCoolDown, "how long the retired server's addresses stay reserved")
	cmd.Flags().BoolVar(&f.force, "force", false, "retire it even when its BMC does not answer (it is not powered off)")
	cmd.Flags().BoolVar(&f.yes, "yes", false, "do not ask before retiring a controller")
	cmd.Flags().BoolVar(&f.wipe, "wipe", false, "wipe every disk of the server first (a reinstall over wiped disks, as racker reprovision), then power it off")
	addProvisionFlags(cmd.Flags(), &f.prov)
	return cmd
}

func runRetire(cmd *cobra.Command, env *Env, pf *PlanFlags, f *retireFlags, name string) error {
	ctx := cmd.Context()
	if f.coolDown < 0 {
		return usageErrorf("--cool-down %s: want 0 or more", f.coolDown)
	}
	inv, p, err := env.MakePlan(pf, true)
	if err != nil {
		return err
	}
	n, ok := p.Find(name)
	if !ok {
		// Its row is gone already: an interrupted retire, or a row the
		// operator deleted by hand. What the provisioning state knows of
		// it is enough to finish.
		n, ok = leftRow(env, inv, name)
		if !ok {
			if r, ok := retiredAlready(env, name); ok {
				fmt.Fprintf(env.Stdout, "retire: %s left the rack already (%s)\n", name, r)
				return nil
			}
			return fmt.Errorf("node %q: not in the rack (give a hostname, primary MAC, BMC MAC or plan index; see racker plan)", name)
		}
		env.Logger().Info("the node's row is gone from nodes.csv already: finishing its retirement", "node", nodeLabel(n))
		// Powered off before its row went, most likely; again, to be
		// sure (a BMC that does not answer now is no reason to stop).
		poweredOff := true
		if err := powerOffLeft(ctx, env, inv, p, n, f.prov.bmcDriver, f.prov.insecure, f.prov.ipmiV15, f.prov.bootURL); err != nil {
			env.Logger().Warn("could not power the node off", "node", nodeLabel(n), "err", err)
			poweredOff = false
		}
		return finishRetire(cmd, env, pf, f, n, poweredOff)
	}
	switch n.Role {
	case plan.Management:
		return fmt.Errorf("node %q is the management node, where Racker runs: it cannot retire itself", name)
	case plan.Controller:
		if !f.yes {
			if !env.Interactive() {
				return fmt.Errorf("%s is a controller: retiring it shrinks the control plane; not on a terminal, so pass --yes to confirm (or racker replace it)", nodeLabel(n))
			}
			answer, _ := env.ask(fmt.Sprintf("%s is a controller. Retire it and power it off? [y/N] ", nodeLabel(n)))
			if a := strings.ToLower(answer); a != "y" && a != "yes" {
				return &ExitError{Code: 1, Err: errors.New("retire: cancelled")}
			}
		}
	}
	if f.wipe {
		if err := wipe(ctx, env, inv, p, n, &f.prov); err != nil {
			return fmt.Errorf("retiring %s: wiping its disks: %w (it is not retired; run again, or retire it without --wipe)", nodeLabel(n), err)
		}
	}
	poweredOff := true
	if err := powerOff(ctx, env, inv, p, n, f.prov.bmcDriver, f.prov.insecure, f.prov.ipmiV15, f.prov.bootURL); err != nil {
		if !f.force {
			return fmt.Errorf("retiring %s: powering it off: %w (a server whose BMC is dead is retired with --force)", nodeLabel(n), err)
		}
		env.Logger().Warn("retiring without powering off: the BMC did not answer (--force)", "node", nodeLabel(n), "err", err)
		poweredOff = false
	}
	now := time.Now()
	if err := inventory.RemoveRow(inv.Dir, n.PrimaryMAC, fmt.Sprintf("racker retire %s: %s", today(now), n.Hostname)); err != nil {
		return fmt.Errorf("retiring %s: %w", nodeLabel(n), err)
	}
	return finishRetire(cmd, env, pf, f, n, poweredOff)
}

// finishRetire does what follows nodes.csv's rewrite, each step safe to
// repeat: remember the MACs as retired, forget the node, reload a running
// racker serve.
func finishRetire(cmd *cobra.Command, env *Env, pf *PlanFlags, f *retireFlags, n plan.Node, poweredOff bool) error {
	now := time.Now()
	if err := plan.Retire(plan.NewStore(env.StateDir), n, now, f.coolDown); err != nil {
		return err
	}
	if _, _, err := env.afterLeaving(cmd.Context(), pf, f.prov.bootURL, []string{n.PrimaryMAC}); err != nil {
		return err
	}
	if err := env.forgetLeftBMC(n, n.BMCIP, n.BMCMAC); err != nil {
		return err
	}
	off := "powered off"
	if !poweredOff {
		off = "NOT powered off (its BMC did not answer)"
	}
	fmt.Fprintf(env.Stdout, "retire: %s is out of the rack, %s; its row in nodes.csv is a comment now; its addresses %s stay reserved until %s\n",
		nodeLabel(n), off, addrs(n), now.Add(f.coolDown).UTC().Format(time.RFC3339))
	return nil
}

func addrs(n plan.Node) string {
	var out []string
	for _, a := range []interface{ IsValid() bool }{n.IP, n.BMCIP} {
		if a.IsValid() {
			out = append(out, fmt.Sprint(a))
		}
	}
	if len(out) == 0 {
		return "(none)"
	}
	return strings.Join(out, ", ")
}

// leftRow finds a node whose row left nodes.csv in the provisioning state
// (by hostname, primary or BMC MAC), for finishing its retirement.
func leftRow(env *Env, inv *inventory.Inventory, name string) (plan.Node, bool) {
	st, err := orchestrator.Load(env.StateDir)
	if err != nil {
		return plan.Node{}, false
	}
	mac, _ := inventory.NormalizeMAC(name)
	for _, r := range st.Nodes {
		if r.Hostname != name && (mac == "" || (r.PrimaryMAC != mac && r.BMCMAC != mac)) {
			continue
		}
		if _, listed := inv.NodeByMAC(r.PrimaryMAC); listed {
			return plan.Node{}, false
		}
		return plan.Node{PrimaryMAC: r.PrimaryMAC, BMCMAC: r.BMCMAC, Hostname: r.Hostname, Role: plan.Role(r.Role)}, true
	}
	return plan.Node{}, false
}

// powerOffLeft powers off a node whose row left nodes.csv: its BMC is
// reached at the address the boot services leased it (still there until
// the retirement finishes), with the plan extended by the node.
func powerOffLeft(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, n plan.Node, driver string, insecure, ipmiV15 bool, bootURL string) error {
	q := *p
	q.Nodes = append(append([]plan.Node{}, p.Nodes...), n)
	return powerOff(ctx, env, inv, &q, n, driver, insecure, ipmiV15, bootURL)
}

// retiredAlready says whether name (a hostname or MAC) is recorded in
// plan.json as having left the rack, and since when.
func retiredAlready(env *Env, name string) (string, bool) {
	st, err := plan.NewStore(env.StateDir).Load()
	if err != nil {
		return "", false
	}
	mac, _ := inventory.NormalizeMAC(name)
	for m, r := range st.Retired {
		if m == mac || (r.Hostname == name && r.ReplacedBy == "") {
			if r.ReplacedBy != "" {
				return "replaced by " + r.ReplacedBy + " on " + today(r.Since), true
			}
			return "retired on " + today(r.Since), true
		}
	}
	return "", false
}

// wipe reinstalls node n with every disk wiped (wipe-all, as racker
// reprovision does) and waits until it booted, so that none of its data
// leaves the rack.
func wipe(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, n plan.Node, f *provisionFlags) error {
	macs := []string{n.PrimaryMAC}
	pr := &provisioning{command: "retire", inv: inv, plan: p, only: map[string]bool{n.PrimaryMAC: true}, flags: f,
		before: func(*bootServices) error { return orchestrator.MarkReprovision(env.StateDir, macs, time.Now()) }}
	return pr.run(ctx, env)
}
