package simcli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

func init() { register(newFaultCmd) }

func newFaultCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "fault NODE " + strings.Join(rack.Faults, "|") + " | fault rogue on|off",
		Short: "Inject or heal a fault on a server (NODE is n1… or its primary MAC), or plug in the rogue host",
		Long: `Faults:
  bmc-down / bmc-up        pull / plug the BMC's cable (no DHCP, no IPMI)
  link-down / link-up      the server's primary NIC loses / regains carrier
  install-fail / install-ok
                           the management node resets the server's downloads of
                           the install image, so its installs fail (the OS reports
                           "failed" to Racker) until install-ok`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: rack.Faults,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			if args[0] == "rogue" {
				err = rogueFault(env, s, args[1])
			} else {
				err = rack.Fault(cmd.Context(), s, args[0], args[1], env.Logger())
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s: %s\n", args[0], args[1])
			return nil
		},
	}
}
