package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newIPMICmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "ipmi", Short: "BMC diagnostics"}
	cmd.AddCommand(newIPMIDiagCmd(env))
	return cmd
}

func newIPMIDiagCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var output string
	cmd := &cobra.Command{
		Use:   "diag NODE|--bmc URL",
		Short: "Show a BMC's device id, firmware, power, boot flags, address, MAC and SOL support",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, label, err := env.openTarget(cmd.Context(), &bf, args)
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.Diag(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				e := json.NewEncoder(env.Stdout)
				e.SetIndent("", "  ")
				return e.Encode(d)
			}
			w := env.Stdout
			fmt.Fprintf(w, "node:        %s\n", label)
			fmt.Fprintf(w, "driver:      %s\n", d.Driver)
			fmt.Fprintf(w, "BMC address: %s\n", d.Address)
			if d.MAC != "" {
				fmt.Fprintf(w, "BMC MAC:     %s\n", d.MAC)
			}
			if d.Protocol != "" {
				fmt.Fprintf(w, "protocol:    %s\n", d.Protocol)
			}
			if d.Firmware != "" {
				fmt.Fprintf(w, "device:      id %d rev %d, firmware %s, IPMI %s, manufacturer %d, product %#04x\n",
					d.DeviceID, d.DeviceRevision, d.Firmware, d.IPMIVersion, d.ManufacturerID, d.ProductID)
			}
			fmt.Fprintf(w, "power:       %s\n", d.Power)
			if d.BootKnown {
				fmt.Fprintf(w, "boot flags:  %s\n", d.Boot)
			}
			fmt.Fprintf(w, "SOL:         %v\n", d.SOLAvailable)
			for _, p := range d.Problems {
				fmt.Fprintf(w, "problem:     %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}
