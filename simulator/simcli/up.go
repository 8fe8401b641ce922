package simcli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

func init() { register(newUpCmd) }

func newUpCmd(env *Env) *cobra.Command {
	var c rack.Config
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the rack (or complete an existing one): networks, management node, VMs, virtual BMCs, racker serve",
		Long: `Builds a rack: the bridges NAME-int (isolated, the rack's internal L2) and
NAME-pub (NAT to the uplink), the management node as a network namespace with
Racker's folders, one libvirt VM per server and one virtual BMC per VM.
Running it again completes the rack and restarts stopped daemons.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Name, c.Dir = env.Name, env.Dir
			if c.SimBinary == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("while finding the racker-sim executable: %w", err)
				}
				c.SimBinary = exe
			}
			start := time.Now()
			s, err := rack.Up(cmd.Context(), c, env.Logger())
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "rack %s is up in %.1f s: management node + %d servers (%s)\n", s.Name, time.Since(start).Seconds(), len(s.Machines)-1, s.Dir)
			fmt.Fprint(env.Stdout, usage(s))
			fmt.Fprint(env.Stdout, uiHint(s))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Nodes, "nodes", 0, "number of servers besides the management node (default 3)")
	f.StringSliceVar(&c.Types, "types", nil, "node types given to the servers round-robin (default: default)")
	f.StringSliceVar(&c.UEFITypes, "uefi-types", nil, "node types that boot with UEFI firmware (OVMF)")
	f.StringVar(&c.NodesCSV, "nodes-csv", "", "take the machines' MACs and types from this nodes.csv (the row commented 'mgmt', else the first, is the management node)")
	f.StringVar(&c.OS, "os", "testos", "OS racker serve installs: testos or flatcar")
	f.BoolVar(&c.NoBMC, "no-bmc", false, "no virtual BMCs (quick laptop mode: Racker drives the VMs through libvirt)")
	f.IntVar(&c.MemoryMiB, "memory", 1024, "memory per VM in MiB")
	f.IntVar(&c.Disks, "disks", 2, "blank disks per VM, 1 or 2")
	f.StringVar(&c.RackerBinary, "racker-bin", besideExecutable("racker"), "racker executable installed into the management node")
	f.StringVar(&c.TestOSDir, "testos-dir", besideExecutable("testos"), "test OS release folders (make testos) that racker serve offers with --os testos")
	return cmd
}

func usage(s *rack.State) string {
	flag := ""
	if s.Name != rack.DefaultName {
		flag = " --name " + s.Name
	}
	driver := ""
	if s.NoBMC {
		driver = " --bmc-driver libvirt" // no vBMCs: Racker drives the domains
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nIn the management node (Racker's paths are the rack's own):\n")
	fmt.Fprintf(&b, "  racker-sim%s exec -- racker factory check\n", flag)
	fmt.Fprintf(&b, "  racker-sim%s exec -- racker factory gen-ssh-key\n", flag)
	fmt.Fprintf(&b, "  racker-sim%s exec -- racker bootstrap%s\n", flag, driver)
	fmt.Fprintf(&b, "Look at it:\n  racker-sim%s status\n  racker-sim%s console n1\n", flag, flag)
	fmt.Fprintf(&b, "Break it:\n  racker-sim%s fault n1 %s\n", flag, strings.Join(rack.Faults, "|"))
	fmt.Fprintf(&b, "Remove it:\n  racker-sim%s down\n", flag)
	return b.String()
}
