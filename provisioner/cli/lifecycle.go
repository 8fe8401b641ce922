package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// What racker replace and racker retire share: the steps after nodes.csv
// and plan.json changed, each one safe to repeat, so that running the
// command again after a crash finishes the job.

// afterLeaving finishes a machine's departure (retired, or replaced): the
// plan is made again (which applies a recorded replacement and fixes the
// retired MACs), the orchestrator forgets the old machine, and a running
// racker serve re-reads the plan, dropping the old MACs' leases and
// targets. It returns the new plan.
func (e *Env) afterLeaving(ctx context.Context, pf *PlanFlags, bootURL string, oldMACs []string) (*inventory.Inventory, *plan.Plan, error) {
	inv, p, err := e.MakePlan(pf, true)
	if err != nil {
		return nil, nil, err
	}
	if err := orchestrator.Forget(e.StateDir, oldMACs); err != nil {
		return nil, nil, fmt.Errorf("removing %v from the provisioning state: %w", oldMACs, err)
	}
	e.reloadRunningServices(ctx, bootURL, p.Management.IP)
	return inv, p, nil
}

// forgetLeftBMC drops what the state folder kept of the BMC of a machine
// that left (bmc.Forget: its pinned TLS key, its IPMI protocol, auto's
// choice), by its address and, when given, its MAC. A replacement's BMC
// takes the same address with a key of its own, which the old pin would
// refuse; a retired machine's entries would only linger.
func (e *Env) forgetLeftBMC(n plan.Node, addr netip.Addr, mac string) error {
	var hosts []string
	if addr.IsValid() {
		hosts = []string{addr.String()}
	}
	gone, err := bmc.Forget(e.StateDir, hosts, mac)
	if err != nil {
		return fmt.Errorf("forgetting the old BMC of %s: %w", nodeLabel(n), err)
	}
	for _, r := range gone {
		e.Logger().Info("forgot what was kept of the old BMC", "node", nodeLabel(n), "forgot", r.String())
	}
	return nil
}

// reloadRunningServices asks a running racker serve to re-read nodes.csv
// and plan.json. No boot services running is fine (the next start reads
// the files); one that cannot reload is told about, with the way out.
func (e *Env) reloadRunningServices(ctx context.Context, url string, mgmt netip.Addr) {
	c := bootClient(url, mgmt, 8080)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Healthz(ctx); err != nil {
		e.Logger().Info("no boot services answer; they read the new plan when they start", "err", err)
		return
	}
	if err := c.ReloadPlan(ctx); err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == 404 {
			e.Logger().Warn("the running boot services cannot re-read the plan themselves; run systemctl reload racker-serve (or send racker serve a SIGHUP)")
			return
		}
		e.Logger().Warn("the running boot services did not take the new plan; run systemctl reload racker-serve", "err", err)
		return
	}
	e.Logger().Info("the running boot services took the new plan")
}

// powerOff powers node n off through its BMC, as a run would reach it.
func powerOff(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, n plan.Node, driver string, insecure, ipmiV15 bool, bootURL string) error {
	t, err := bmcTargetsFor(env, inv, p, driver, insecure, ipmiV15, bootClient(bootURL, p.Management.IP, 8080))
	if err != nil {
		return err
	}
	spec := orchestrator.NodeSpec{PrimaryMAC: n.PrimaryMAC, BMCMAC: n.BMCMAC, Hostname: n.Hostname}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u, err := t.urlFor(ctx, spec)
	if err != nil {
		return err
	}
	opts := t.opts
	opts.Node, opts.PrimaryMAC = n.Hostname+" ("+n.PrimaryMAC+")", n.PrimaryMAC
	c, err := bmc.Open(ctx, u, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Power(ctx, bmc.ActionOff); err != nil {
		return err
	}
	s, err := c.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("reading the power state after power off: %w", err)
	}
	if s != bmc.PowerOff {
		return fmt.Errorf("the BMC says the node is %s after power off", s)
	}
	return nil
}

// nodeLabel names a node for messages: hostname (primary MAC).
func nodeLabel(n plan.Node) string {
	if n.Hostname == "" {
		return n.PrimaryMAC
	}
	return n.Hostname + " (" + n.PrimaryMAC + ")"
}

// rowOf returns the inventory row of a primary MAC.
func rowOf(inv *inventory.Inventory, primary string) (inventory.Node, bool) {
	for _, n := range inv.Nodes {
		if n.PrimaryMAC == primary {
			return n, true
		}
	}
	return inventory.Node{}, false
}

// today is the date written into nodes.csv comments.
func today(now time.Time) string { return now.UTC().Format("2006-01-02") }
