package simcli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

func init() { register(newDownCmd) }

func newDownCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove the rack: daemons, VMs, namespaces, bridges, NAT rules and its folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if s, err := env.LoadRack(); err == nil { // the rogue host first: it hangs on the internal bridge
				if err := rogueFault(env, s, "off"); err != nil {
					return err
				}
			}
			if err := rack.Down(cmd.Context(), env.RackDir(), env.Logger()); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "rack %s is down\n", env.Name)
			return nil
		},
	}
}
