package cli

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// LoadInventory reads the OEM folder named by the global flags and logs its
// warnings.
func (e *Env) LoadInventory() (*inventory.Inventory, error) {
	inv, err := inventory.Load(inventory.Options{Dir: e.OEMDir, MgmtMAC: e.MgmtMAC, PXEInterface: e.PXEInterface})
	if err != nil {
		return nil, err
	}
	for _, w := range inv.Warnings {
		e.Logger().Warn(w)
	}
	return inv, nil
}

// PlanFlags are the user's plan choices as command-line flags. The rack
// remembers them (choices.go): flags left out take the saved values.
type PlanFlags struct {
	fs           *pflag.FlagSet // the command's flags, for the remembered choices
	subnet       string
	storageNodes string
	exclude      []string
	Choices      plan.Choices
	// replan and yes: --replan, on the commands that save choices (plan,
	// bootstrap), and its confirmation off a terminal.
	replan, yes bool
}

// AddPlanFlags registers the plan choices on a command's flag set.
func AddPlanFlags(fs *pflag.FlagSet, pf *PlanFlags) {
	pf.fs = fs
	fs.StringVar(&pf.subnet, "subnet", plan.DefaultSubnet.String(), "internal subnet (the management node takes its first host address)")
	fs.StringVar(&pf.Choices.ClusterName, "cluster-name", "racker", "cluster name (hostnames are NAME-controller-N, NAME-worker-N)")
	fs.IntVar(&pf.Choices.Controllers, "controllers", 0, "number of controllers, 1 or 3 (default: 3 when the controller type has 3 nodes, else 1)")
	fs.StringVar(&pf.Choices.ControllerType, "controller-type", "", "node type of the controllers, or 'any' (default: the most common type)")
	fs.StringVar(&pf.Choices.StorageType, "storage-type", "", "node type of storage nodes")
	fs.StringVar(&pf.storageNodes, "storage-nodes", "", "number of storage nodes, or 'all' (default: all of --storage-type)")
	fs.StringSliceVar(&pf.exclude, "exclude", nil, "MACs of nodes to leave out (comma-separated; --exclude= for none)")
}

// addReplanFlags registers --replan and --yes on the commands that save
// the rack's choices.
func addReplanFlags(fs *pflag.FlagSet, pf *PlanFlags) {
	fs.BoolVar(&pf.replan, "replan", false, "change choices the rack was planned with (cluster name, subnet, …): shows the renames and renumbering and asks first")
	fs.BoolVar(&pf.yes, "yes", false, "do not ask (--replan off a terminal)")
}

// Resolve turns the flag values into plan choices.
func (pf *PlanFlags) Resolve() (plan.Choices, error) {
	c := pf.Choices
	p, err := netip.ParsePrefix(pf.subnet)
	if err != nil {
		return c, fmt.Errorf("--subnet %q: %w", pf.subnet, err)
	}
	if p.Bits() > 29 {
		return c, fmt.Errorf("--subnet %s: too small; use /29 or larger", p)
	}
	c.Subnet = p
	switch s := strings.TrimSpace(pf.storageNodes); s {
	case "":
	case "all":
		c.StorageNodes = plan.AllStorage
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return c, fmt.Errorf("--storage-nodes %q: want a count or 'all'", s)
		}
		c.StorageNodes = n
	}
	c.Exclude = pf.exclude
	return c, nil
}

// MakePlan loads the inventory and plans the rack with the saved choices
// (and the flags that agree with them). With persist, newly allocated
// addresses and hostnames are stored in the state folder, and plan and
// bootstrap save their choices (with --replan, after the user saw what
// changes); otherwise the plan is a dry run over the stored state.
func (e *Env) MakePlan(pf *PlanFlags, persist bool) (*inventory.Inventory, *plan.Plan, error) {
	inv, err := e.LoadInventory()
	if err != nil {
		return nil, nil, err
	}
	// Again, not only before the command ran: racker serve re-plans on
	// SIGHUP with what a racker plan --replan saved meanwhile.
	saved, changes, err := e.recallChoices(pf.fs)
	if err != nil {
		return nil, nil, err
	}
	c, err := pf.Resolve()
	if err != nil {
		return nil, nil, err
	}
	store := plan.NewStore(e.StateDir)
	if !persist {
		snap, err := store.Snapshot()
		if err != nil {
			return nil, nil, err
		}
		p, err := plan.Make(inv, c, snap)
		if err != nil {
			return nil, nil, err
		}
		return inv, p, nil
	}
	if len(changes) > 0 {
		if err := e.confirmReplan(inv, store, saved, changes, c, pf.yes); err != nil {
			return nil, nil, err
		}
	} else if pf.replan {
		e.Logger().Info("--replan: the flags change none of the rack's saved choices")
	}
	p, err := plan.Make(inv, c, store)
	if err != nil {
		return nil, nil, err
	}
	if savesChoices(pf.fs) {
		if err := store.Remember(choicesToSave(pf.fs, p)); err != nil {
			return nil, nil, fmt.Errorf("saving the rack's choices: %w", err)
		}
	}
	return inv, p, nil
}
