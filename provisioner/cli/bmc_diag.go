package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// newBMCCmd is racker bmc; racker ipmi, its name before Redfish, stays an
// alias so scripts keep working.
func newBMCCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "bmc", Aliases: []string{"ipmi"}, Short: "BMC diagnostics (IPMI or Redfish), and forgetting what Racker remembers of a BMC",
		Example: `  racker bmc diag racker-worker-0`}
	cmd.AddCommand(newBMCDiagCmd(env), newBMCForgetCmd(env))
	return cmd
}

func newBMCDiagCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var out output
	cmd := &cobra.Command{
		Use:   "diag NODE|--bmc URL",
		Short: "Show a BMC's protocol, device facts, firmware, power, boot flags, address and console support",
		Long: `Show what a node's BMC reports: its address and protocol (IPMI or Redfish),
device and firmware (over Redfish: manufacturer, model, serial, BIOS version,
boot mode; -o wide shows them all), power, boot flags and whether it offers
a serial console. racker ipmi diag is the same command. -o table is what
older releases called -o text (still accepted).`,
		Example: `  racker bmc diag racker-worker-0
  racker bmc diag --bmc ipmi://172.24.213.3 -o json
  racker bmc diag --bmc redfish://172.24.213.3 -o wide`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			c, label, err := env.openTarget(cmd.Context(), &bf, args)
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.Diag(cmd.Context())
			if err != nil {
				return err
			}
			return out.print(env.Stdout, view{value: d, names: func() []string { return []string{label} },
				table: func(w io.Writer, wide bool) error {
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
					for _, kv := range [][2]string{{"manufacturer", d.Manufacturer}, {"model", d.Model}, {"serial", d.SerialNumber},
						{"BIOS", d.BIOSVersion}, {"boot mode", d.BootMode}, {"health", d.Health}, {"TLS", d.TLS}, {"console", d.Console}} {
						if kv[1] != "" && (wide || kv[0] == "manufacturer" || kv[0] == "model") {
							fmt.Fprintf(w, "%-12s %s\n", kv[0]+":", kv[1])
						}
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
				}})
		},
	}
	addOutputFlag(cmd, &out)
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}
