package simcli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

func init() { register(newStatusCmd) }

func newStatusCmd(env *Env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Each server's power, boot device, BMC address and console log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			st, err := rack.GetStatus(cmd.Context(), s, env.Logger())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			_, err = fmt.Fprint(env.Stdout, st.FormatTable())
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}
