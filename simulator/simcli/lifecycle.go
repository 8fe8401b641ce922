package simcli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

// racker-sim add, replace and remove: what the data-centre hands do to a
// running rack, for Racker's lifecycle commands to deal with.

func init() { register(newAddCmd, newReplaceCmd, newRemoveCmd) }

func lifeConfig(c *rack.LifeConfig) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("while finding the racker-sim executable: %w", err)
	}
	c.SimBinary = exe
	return nil
}

func newAddCmd(env *Env) *cobra.Command {
	var c rack.LifeConfig
	var n int
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add servers to a running rack: VMs (off, blank disks), virtual BMCs, and their rows in nodes.csv",
		Long: `Cables new servers into a running rack: a VM each (powered off, blank
disks), its BMC's namespace on the internal bridge and a virtual BMC, and
appends a row each to the management node's nodes.csv (every other byte of
it kept), as the factory sheet for the new servers would. Nothing else
changes. Then, in the management node: racker bootstrap provisions only them.`,
		Example: `  racker-sim add
  racker-sim add --nodes 2 --types storage`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lifeConfig(&c); err != nil {
				return err
			}
			added, err := rack.Add(cmd.Context(), env.RackDir(), n, c, env.Logger())
			for _, m := range added {
				fmt.Fprintf(env.Stdout, "added %s: primary MAC %s, BMC MAC %s, type %s (its row is in nodes.csv)\n", m.Name, m.PrimaryMAC, m.BMCMAC, m.Type)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&n, "nodes", 1, "how many servers to add")
	f.StringSliceVar(&c.Types, "types", nil, "node types of the new servers, round-robin (default: the last server's)")
	f.StringSliceVar(&c.UEFITypes, "uefi-types", nil, "node types that boot with UEFI (default: as the rack's servers of that type)")
	f.StringArrayVar(&c.Disks, "disks", nil, "blank disks of the new servers, as racker-sim up --disks")
	f.IntVar(&c.MemoryMiB, "memory", 1024, "memory per VM in MiB")
	return cmd
}

func newReplaceCmd(env *Env) *cobra.Command {
	var c rack.LifeConfig
	cmd := &cobra.Command{
		Use:   "replace NODE",
		Short: "Swap a server for a blank machine with new MACs and a new virtual BMC, powered off",
		Long: `Swaps server NODE (n1…, or its primary MAC) for a new machine in the same
slot: the old VM, its disks and its virtual BMC go; a blank VM with new MACs
and a new virtual BMC come, powered off. nodes.csv is not changed: telling
Racker is the operator's job, with the command this prints.`,
		Example: `  racker-sim replace n1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lifeConfig(&c); err != nil {
				return err
			}
			old, m, err := rack.Replace(cmd.Context(), env.RackDir(), args[0], c, env.Logger())
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "replaced %s: was %s, now primary MAC %s, BMC MAC %s, secondary MAC %s\n", m.Name, old.PrimaryMAC, m.PrimaryMAC, m.BMCMAC, m.SecondaryMAC)
			fmt.Fprintf(env.Stdout, "tell Racker, in the management node:\n  racker replace %s %s %s %s\n", old.PrimaryMAC, m.PrimaryMAC, m.BMCMAC, m.SecondaryMAC)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&c.Disks, "disks", nil, "blank disks of the new machine, as racker-sim up --disks")
	f.IntVar(&c.MemoryMiB, "memory", 1024, "memory of the new VM in MiB")
	return cmd
}

func newRemoveCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NODE",
		Short: "Take a server out of a running rack: its VM, disks and virtual BMC",
		Long: `Takes server NODE (n1…, or its primary MAC) out of the rack: its VM and
disks, its virtual BMC and its BMC's namespace. nodes.csv is not changed:
racker retire NODE, run before, powers it off and takes it out of Racker's plan.`,
		Example: `  racker-sim exec -- racker retire racker-worker-1
  racker-sim remove n3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := rack.Remove(cmd.Context(), env.RackDir(), args[0], env.Logger())
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "removed %s (primary MAC %s)\n", m.Name, m.PrimaryMAC)
			return nil
		},
	}
}
