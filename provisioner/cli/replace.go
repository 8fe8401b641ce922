package cli

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

func newReplaceCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var f provisionFlags
	var noProvision bool
	cmd := &cobra.Command{
		Use:   "replace OLD NEW-PRIMARY-MAC NEW-BMC-MAC [NEW-SECONDARY-MAC]",
		Short: "Put a new machine (new MACs) in a broken one's place: same hostname, role, addresses; then install it",
		Long: `A replacement server arrives with new MACs. racker replace gives it the old
node's place: its hostname, role, node address, BMC address and storage label
(its row in nodes.csv, rewritten atomically with the old row kept as a comment).
The old machine's MACs are retired: the boot services forget their leases and
targets and never answer them again, so the broken server, if still cabled,
cannot take an address. Then the new machine is installed like any other
(PXE through its BMC, install, boot from disk), unless --no-provision.

OLD is the old node's hostname, primary MAC, BMC MAC or plan index. The other
nodes are not touched. Interrupted, it finishes when run again with the same
arguments.`,
		Example: `  racker replace racker-worker-1 0c:c4:7a:00:00:10 0c:c4:7a:00:00:11 0c:c4:7a:00:00:12
  racker replace racker-controller-0 0c:c4:7a:00:01:10 0c:c4:7a:00:01:11 --no-provision`,
		Args: cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.osGiven = cmd.Flags().Changed("os") || cmd.Flags().Changed("os-version")
			return runReplace(cmd, env, &pf, &f, args, noProvision)
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addProvisionFlags(cmd.Flags(), &f)
	cmd.Flags().BoolVar(&noProvision, "no-provision", false, "only give the new MACs the old node's place; install it later with racker bootstrap")
	return cmd
}

func runReplace(cmd *cobra.Command, env *Env, pf *PlanFlags, f *provisionFlags, args []string, noProvision bool) error {
	names := []string{"NEW-PRIMARY-MAC", "NEW-BMC-MAC", "NEW-SECONDARY-MAC"}
	var macs [3]string
	seen := map[string]string{}
	for i, a := range args[1:] {
		m, err := inventory.NormalizeMAC(a)
		if err != nil {
			return usageErrorf("%s: %v", names[i], err)
		}
		if other, dup := seen[m]; dup {
			return usageErrorf("%s and %s are the same MAC %s", other, names[i], m)
		}
		seen[m] = names[i]
		macs[i] = m
	}
	newPrimary, newBMC, newSecondary := macs[0], macs[1], macs[2]
	inv, p, err := env.MakePlan(pf, true)
	if err != nil {
		return err
	}
	old, found := p.Find(args[0])
	if found && old.PrimaryMAC == newPrimary {
		// Run again after an interruption, OLD named by hostname: the
		// plan gave the new MACs the old node's place already.
		oldMACs := oldMACsOf(env, newPrimary)
		if len(oldMACs) == 0 {
			return fmt.Errorf("node %s already has the primary MAC %s", nodeLabel(old), newPrimary)
		}
		env.Logger().Info("nodes.csv has the new machine already: finishing the replacement", "node", nodeLabel(old))
		return finishReplace(cmd, env, pf, f, oldMACs, old, noProvision)
	}
	if !found {
		// Run again after an interruption: nodes.csv has the new row
		// already, and the plan gave it the old node's place.
		n, ok := p.Find(newPrimary)
		if !ok || (n.Hostname != args[0] && !replacedBy(p, env, args[0], newPrimary)) {
			return fmt.Errorf("node %q: not in the rack (give a hostname, primary MAC, BMC MAC or plan index; see racker plan)", args[0])
		}
		env.Logger().Info("nodes.csv has the new machine already: finishing the replacement", "node", nodeLabel(n))
		return finishReplace(cmd, env, pf, f, oldMACsOf(env, newPrimary), n, noProvision)
	}
	switch {
	case old.Role == plan.Management:
		return fmt.Errorf("node %q is the management node, where Racker runs: it cannot be replaced from itself", args[0])
	}
	for _, m := range macs {
		if m == "" {
			continue
		}
		if row, used := inv.NodeByMAC(m); used && row.PrimaryMAC != old.PrimaryMAC {
			return fmt.Errorf("%s is already in nodes.csv (line %d, primary MAC %s): a replacement has MACs of its own", m, row.Line, row.PrimaryMAC)
		}
		if p.IsRetired(m) {
			return fmt.Errorf("%s belongs to a machine that left the rack (racker retire or replace); put its row back in nodes.csv to bring that machine back instead", m)
		}
	}
	row, _ := rowOf(inv, old.PrimaryMAC)
	now := time.Now()
	if err := plan.Replace(plan.NewStore(env.StateDir), old, newPrimary, newBMC, newSecondary, now); err != nil {
		return err
	}
	newRow := inventory.Node{PrimaryMAC: newPrimary, BMCMAC: newBMC, SecondaryMAC: newSecondary, Type: row.Type, Comments: row.Comments}
	note := fmt.Sprintf("racker replace %s: %s replaced by %s", today(now), old.Hostname, newPrimary)
	if err := inventory.ReplaceRow(inv.Dir, old.PrimaryMAC, newRow, note); err != nil {
		return fmt.Errorf("replacing %s: %w", nodeLabel(old), err)
	}
	env.Logger().Info("nodes.csv rewritten: the new machine takes the old one's row", "node", old.Hostname, "old", old.PrimaryMAC, "new", newPrimary)
	return finishReplace(cmd, env, pf, f, []string{old.PrimaryMAC}, old, noProvision)
}

// finishReplace does what follows nodes.csv's rewrite, each step safe to
// repeat: re-plan (the new MACs take the old place), forget the old
// machine, reload a running racker serve, install the new machine.
func finishReplace(cmd *cobra.Command, env *Env, pf *PlanFlags, f *provisionFlags, oldMACs []string, old plan.Node, noProvision bool) error {
	inv, p, err := env.afterLeaving(cmd.Context(), pf, f.bootURL, oldMACs)
	if err != nil {
		return err
	}
	// The new BMC answers at the old one's address: what was pinned and
	// learned there was the old board's. (Run again, old is the new
	// machine already: its MAC is kept.)
	oldBMCMAC := ""
	if slices.Contains(oldMACs, old.PrimaryMAC) {
		oldBMCMAC = old.BMCMAC
	}
	if err := env.forgetLeftBMC(old, old.BMCIP, oldBMCMAC); err != nil {
		return err
	}
	var n plan.Node
	var ok bool
	for _, x := range p.Servers() {
		if x.Hostname == old.Hostname {
			n, ok = x, true
		}
	}
	if !ok {
		return fmt.Errorf("after the replacement no node is named %s: see racker plan", old.Hostname)
	}
	if old.IP.IsValid() && n.IP != old.IP {
		return fmt.Errorf("after the replacement %s has the address %s, not the old node's %s: see racker plan", n.Hostname, n.IP, old.IP)
	}
	fmt.Fprintf(env.Stdout, "replace: %s is now %s (BMC %s), %s at %s (BMC at %s)\n", n.Hostname, n.PrimaryMAC, n.BMCMAC, n.Role, n.IP, n.BMCIP)
	if n.Role == plan.Controller {
		controllerNote(env, p)
	}
	if noProvision || n.Role == plan.Excluded {
		fmt.Fprintf(env.Stdout, "replace: install it with racker bootstrap (only nodes not yet booted are provisioned)\n")
		return nil
	}
	pr := &provisioning{command: "replace", inv: inv, plan: p, only: map[string]bool{n.PrimaryMAC: true}, flags: f}
	if err := pr.run(cmd.Context(), env); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replace: %s installed and booted\n", n.Hostname)
	return nil
}

// controllerNote says what the cluster profile needs after a controller
// was replaced.
func controllerNote(env *Env, p *plan.Plan) {
	st, err := plan.NewStore(env.StateDir).Load()
	if err != nil || st.Choices["provision"] != cluster.Lokomotive {
		fmt.Fprintln(env.Stdout, "replace: a controller was replaced; the plain Flatcar profile needs nothing more")
		return
	}
	ctrl := make([]string, 0, len(p.Controllers()))
	for _, c := range p.Controllers() {
		ctrl = append(ctrl, c.Hostname)
	}
	fmt.Fprintf(env.Stdout, `replace: a Lokomotive controller was replaced. Its hostname and address are
unchanged, but lokoctl's cluster config names controllers by MAC. Once it is
booted: with 3 controllers (%s), remove the old etcd member first
(etcdctl member list / member remove on a healthy controller); then run
racker bootstrap again, which rewrites the cluster config with the new MAC and
runs lokoctl cluster apply. With a single controller, the cluster's etcd is
gone with the old disk: restore it from a backup before lokoctl cluster apply.
`, strings.Join(ctrl, ", "))
}

// replacedBy says whether name (a MAC of the old machine) is recorded as
// replaced by newPrimary.
func replacedBy(p *plan.Plan, env *Env, name, newPrimary string) bool {
	mac, err := inventory.NormalizeMAC(name)
	if err != nil {
		return false
	}
	st, err := plan.NewStore(env.StateDir).Load()
	if err != nil {
		return false
	}
	return st.Retired[mac].ReplacedBy == newPrimary
}

// oldMACsOf lists the MACs of the machine newPrimary replaced, from
// plan.json.
func oldMACsOf(env *Env, newPrimary string) []string {
	st, err := plan.NewStore(env.StateDir).Load()
	if err != nil {
		return nil
	}
	var out []string
	if r, ok := st.Replacements[newPrimary]; ok {
		out = append(out, r.OldPrimaryMAC)
	}
	for mac, r := range st.Retired {
		if r.ReplacedBy == newPrimary {
			out = append(out, mac)
		}
	}
	return out
}
