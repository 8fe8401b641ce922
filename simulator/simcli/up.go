package simcli

import (
	"fmt"
	"os"
	"path/filepath"
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
		Short: "Build the rack (or complete an existing one): networks, management node, VMs, virtual BMCs, Racker",
		Long: `Builds a rack: the bridges NAME-int (isolated, the rack's internal L2) and
NAME-pub (NAT to the uplink), one libvirt VM per server, one virtual BMC per
VM, and the management node: a Flatcar-shaped machine (its own read-only /usr
from make mgmtos, its own /etc, /opt, /var; namespaces, not a VM) with a
service manager as PID 1. Racker gets there only through its installer image
(make image), run as 'docker run --rm --privileged --pid host IMAGE' would
run it; racker serve then runs from the installed unit, and up returns once
it answers /healthz. Running it again completes the rack and restarts what
stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Name, c.Dir = env.Name, env.Dir
			if c.RackerImage == "" {
				c.RackerImage = newestImage() // "" when none: rack.Up says how to make one
			}
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
	f.StringArrayVar(&c.Disks, "disks", nil, "blank disks per server as sizes with a unit (K, M, G, T), in order vda,vdb,…: SIZES for all, TYPE=SIZES for one node type; repeatable (default 10G,10G; e.g. --disks uefi=4G,40G)")
	f.StringVar(&c.RackerImage, "racker-image", "", "Racker's installer image (OCI archive) to install in the management node (default: the newest racker-*.oci.tar next to racker-sim, which make image writes)")
	f.StringVar(&c.MgmtOS, "mgmt-os", besideExecutable("mgmtos"), "the management node's OS image (make mgmtos)")
	f.StringVar(&c.TestOSDir, "testos-dir", besideExecutable("testos"), "test OS release folders (make testos); current/ is copied into the management node as Racker's test OS mirror for --os testos")
	return cmd
}

// newestImage is the newest installer image next to racker-sim (make
// image writes bin/racker-VERSION.oci.tar beside bin/racker-sim), or "".
func newestImage() string {
	matches, _ := filepath.Glob(besideExecutable("racker-*.oci.tar"))
	newest, when := "", time.Time{}
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.ModTime().After(when) {
			newest, when = m, st.ModTime()
		}
	}
	return newest
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
