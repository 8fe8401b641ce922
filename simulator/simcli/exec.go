package simcli

import (
	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

func init() { register(newExecCmd) }

func newExecCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "exec -- CMD [ARG…]",
		Short: "Run a command inside the management node, as a login there (all its namespaces, its root file system)",
		Example: `  racker-sim exec -- racker factory check
  racker-sim exec -- racker bootstrap
  racker-sim exec -- ip addr`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			return rack.EnterMgmt(s, args) // returns only on failure
		},
	}
}
