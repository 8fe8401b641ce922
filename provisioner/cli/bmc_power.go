package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bmc"
)

func newPowerCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	cmd := &cobra.Command{
		Use:   "power NODE|--bmc URL on|off|cycle|reset|status",
		Short: "Power a node on, off, cycle or reset it through its BMC, or print its power state",
		RunE: func(cmd *cobra.Command, args []string) error {
			node, rest, err := bf.nodeArgs(args)
			if err != nil {
				return err
			}
			if len(rest) != 1 {
				return fmt.Errorf("want one action: on, off, cycle, reset or status")
			}
			action := strings.ToLower(rest[0])
			switch action {
			case "on", "off", "cycle", "reset", "status":
			default:
				return fmt.Errorf("power %q: want on, off, cycle, reset or status", rest[0])
			}
			c, label, err := env.openBMC(cmd.Context(), &bf, node)
			if err != nil {
				return err
			}
			defer c.Close()
			if action == "status" {
				s, err := c.PowerState(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, s)
				return nil
			}
			if err := c.Power(cmd.Context(), bmc.PowerAction(action)); err != nil {
				return err
			}
			env.Logger().Info("power "+action, "node", label)
			return nil
		},
	}
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}

func newBootdevCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var persistent, efi bool
	cmd := &cobra.Command{
		Use:   "bootdev NODE|--bmc URL [pxe|disk|none] [--persistent] [--efi]",
		Short: "Set a node's boot device (next boot only unless --persistent), or print its boot flags",
		Long: "Set a node's boot device through its BMC, or print the current boot flags when no device is given.\n" +
			"A BMC that accepts flags but cannot report them back (some do) is reported as unverified.",
		RunE: func(cmd *cobra.Command, args []string) error {
			node, rest, err := bf.nodeArgs(args)
			if err != nil {
				return err
			}
			if len(rest) > 1 {
				return fmt.Errorf("want at most one device: pxe, disk or none")
			}
			c, label, err := env.openBMC(cmd.Context(), &bf, node)
			if err != nil {
				return err
			}
			defer c.Close()
			if len(rest) == 0 {
				f, err := c.Boot(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, f)
				return nil
			}
			dev := bmc.Device(strings.ToLower(rest[0]))
			if dev != bmc.DevicePXE && dev != bmc.DeviceDisk && dev != bmc.DeviceNone {
				return fmt.Errorf("boot device %q: want pxe, disk or none", rest[0])
			}
			f := bmc.BootFlags{Device: dev, Persistent: persistent, EFI: efi, Valid: dev != bmc.DeviceNone}
			verified, err := c.SetBoot(cmd.Context(), f)
			if err != nil {
				return err
			}
			state := "verified"
			if !verified {
				state = "unverified: the BMC accepted the flags but does not report them back"
			}
			fmt.Fprintf(env.Stdout, "%s (%s)\n", f, state)
			env.Logger().Debug("boot device set", "node", label, "verified", verified)
			return nil
		},
	}
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the device for every boot (default: next boot only)")
	cmd.Flags().BoolVar(&efi, "efi", false, "UEFI boot (default: legacy BIOS)")
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}
