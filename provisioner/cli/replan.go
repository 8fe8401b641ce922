package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// confirmReplan shows what --replan changes — the choices, then every node
// that is renamed or renumbered — and asks on a terminal; off one, --yes
// is the answer. Both plans are dry runs over the stored state, so the
// addresses shown are the ones the new plan will hold.
func (e *Env) confirmReplan(inv *inventory.Inventory, store *plan.Store, saved map[string]string, changes []choiceChange, next plan.Choices, yes bool) error {
	prev, err := choicesFrom(saved)
	if err != nil {
		return fmt.Errorf("--replan: the saved choices: %w", err)
	}
	snap, err := store.Snapshot()
	if err != nil {
		return err
	}
	before, err := plan.Make(inv, prev, snap)
	if err != nil {
		return fmt.Errorf("--replan: the plan as saved: %w", err)
	}
	snap, err = store.Snapshot()
	if err != nil {
		return err
	}
	after, err := plan.Make(inv, next, snap)
	if err != nil {
		return fmt.Errorf("--replan: the new plan: %w", err)
	}
	writeReplanDiff(e.Stdout, changes, before, after)
	if yes {
		return nil
	}
	if !e.Interactive() {
		return &ExitError{Code: 1, Err: errors.New("--replan: not on a terminal, so pass --yes to apply these changes")}
	}
	answer, _ := e.ask("Apply these changes? [y/N] ")
	if a := strings.ToLower(answer); a != "y" && a != "yes" {
		return &ExitError{Code: 1, Err: errors.New("--replan: cancelled; the rack keeps its choices")}
	}
	return nil
}

// choicesFrom turns saved choices back into plan choices, through the same
// flags that set them.
func choicesFrom(saved map[string]string) (plan.Choices, error) {
	fs := pflag.NewFlagSet("saved", pflag.ContinueOnError)
	var pf PlanFlags
	AddPlanFlags(fs, &pf)
	for name, v := range saved {
		if f := fs.Lookup(name); f != nil {
			if err := setFlag(f, v); err != nil {
				return plan.Choices{}, fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	}
	return pf.Resolve()
}

// writeReplanDiff prints the changed choices and, per machine, what moves.
func writeReplanDiff(w io.Writer, changes []choiceChange, before, after *plan.Plan) {
	fmt.Fprintln(w, "--replan changes the rack's choices:")
	for _, c := range changes {
		fmt.Fprintf(w, "  %s: %s → %s\n", c.flag, quoteEmpty(c.from), quoteEmpty(c.to))
	}
	old := map[string]plan.Node{}
	for _, n := range before.All() {
		old[n.PrimaryMAC] = n
	}
	var lines []string
	for _, n := range after.All() {
		o, ok := old[n.PrimaryMAC]
		if !ok {
			lines = append(lines, fmt.Sprintf("  %s: joins as %s %s (%s)", n.PrimaryMAC, n.Role, dash(n.Hostname), n.IP))
			continue
		}
		var parts []string
		if o.Hostname != n.Hostname {
			parts = append(parts, fmt.Sprintf("hostname %s → %s", dash(o.Hostname), dash(n.Hostname)))
		}
		if o.Role != n.Role {
			parts = append(parts, fmt.Sprintf("role %s → %s", o.Role, n.Role))
		}
		if o.IP != n.IP {
			parts = append(parts, fmt.Sprintf("address %s → %s", o.IP, n.IP))
		}
		if o.BMCIP != n.BMCIP && (o.BMCIP.IsValid() || n.BMCIP.IsValid()) {
			parts = append(parts, fmt.Sprintf("BMC %s → %s", addrOrDash(o.BMCIP.String(), o.BMCIP.IsValid()), addrOrDash(n.BMCIP.String(), n.BMCIP.IsValid())))
		}
		if o.Storage != n.Storage {
			parts = append(parts, fmt.Sprintf("storage %v → %v", o.Storage, n.Storage))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("  %s: %s", n.PrimaryMAC, strings.Join(parts, ", ")))
		}
	}
	if len(lines) == 0 {
		fmt.Fprintln(w, "No machine is renamed or renumbered.")
		return
	}
	fmt.Fprintln(w, "and so its machines:")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w, "Installed nodes keep their old names and addresses until reprovisioned (racker reprovision NODE…);")
	fmt.Fprintln(w, "reload racker serve (systemctl reload racker-serve) for it to serve the new plan.")
}

func addrOrDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}
