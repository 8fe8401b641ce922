package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bmc"
)

// powerView is racker power … status -o json|yaml.
type powerView struct {
	Node  string         `json:"node"`
	Power bmc.PowerState `json:"power"`
}

func newPowerCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var out output
	cmd := &cobra.Command{
		Use:   "power NODE|--bmc URL on|off|cycle|reset|status",
		Short: "Power a node on, off, cycle or reset it through its BMC, or print its power state",
		Example: `  racker power racker-worker-0 status
  racker power racker-worker-0 cycle
  racker power 00:11:22:33:44:20 off
  racker power --bmc ipmi://172.24.213.3 status -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			node, rest, err := bf.nodeArgs(args)
			if err != nil {
				return err
			}
			if len(rest) != 1 {
				return usageErrorf("want one action: on, off, cycle, reset or status")
			}
			action := strings.ToLower(rest[0])
			switch action {
			case "on", "off", "cycle", "reset", "status":
			default:
				return usageErrorf("power %q: want on, off, cycle, reset or status", rest[0])
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
				return out.print(env.Stdout, view{value: powerView{Node: label, Power: s},
					table: func(w io.Writer, wide bool) error {
						if wide {
							_, err := fmt.Fprintf(w, "%s\t%s\n", label, s)
							return err
						}
						_, err := fmt.Fprintln(w, s)
						return err
					},
					names: func() []string { return []string{label} }})
			}
			if err := c.Power(cmd.Context(), bmc.PowerAction(action)); err != nil {
				return err
			}
			env.Logger().Info("power "+action, "node", label)
			return nil
		},
	}
	addBMCFlags(cmd.Flags(), &bf)
	addOutputFlag(cmd, &out)
	return cmd
}

// bootView is racker bootdev -o json|yaml: the flags read back, or set and
// whether the BMC confirmed them.
type bootView struct {
	Node     string        `json:"node"`
	Boot     bmc.BootFlags `json:"boot"`
	Text     string        `json:"text"`
	Verified *bool         `json:"verified,omitempty"` // set only when the flags were written
}

func newBootdevCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var out output
	var persistent, efi bool
	cmd := &cobra.Command{
		Use:   "bootdev NODE|--bmc URL [pxe|disk|none] [--persistent] [--efi]",
		Short: "Set a node's boot device (next boot only unless --persistent), or print its boot flags",
		Long: "Set a node's boot device through its BMC, or print the current boot flags when no device is given.\n" +
			"A BMC that accepts flags but cannot report them back (some do) is reported as unverified.",
		Example: `  racker bootdev racker-worker-0
  racker bootdev racker-worker-0 pxe --efi
  racker bootdev racker-worker-0 disk --persistent -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			node, rest, err := bf.nodeArgs(args)
			if err != nil {
				return err
			}
			if len(rest) > 1 {
				return usageErrorf("want at most one device: pxe, disk or none")
			}
			var dev bmc.Device
			if len(rest) == 1 {
				dev = bmc.Device(strings.ToLower(rest[0]))
				if dev != bmc.DevicePXE && dev != bmc.DeviceDisk && dev != bmc.DeviceNone {
					return usageErrorf("boot device %q: want pxe, disk or none", rest[0])
				}
			}
			c, label, err := env.openBMC(cmd.Context(), &bf, node)
			if err != nil {
				return err
			}
			defer c.Close()
			v := bootView{Node: label}
			if dev == "" {
				if v.Boot, err = c.Boot(cmd.Context()); err != nil {
					return err
				}
				v.Text = v.Boot.String()
			} else {
				v.Boot = bmc.BootFlags{Device: dev, Persistent: persistent, EFI: efi, Valid: dev != bmc.DeviceNone}
				verified, err := c.SetBoot(cmd.Context(), v.Boot)
				if err != nil {
					return err
				}
				v.Verified = &verified
				state := "verified"
				if !verified {
					state = "unverified: the BMC accepted the flags but does not report them back"
				}
				v.Text = fmt.Sprintf("%s (%s)", v.Boot, state)
				env.Logger().Debug("boot device set", "node", label, "verified", verified)
			}
			return out.print(env.Stdout, view{value: v,
				table: func(w io.Writer, wide bool) error {
					if wide {
						_, err := fmt.Fprintf(w, "%s\t%s\n", label, v.Text)
						return err
					}
					_, err := fmt.Fprintln(w, v.Text)
					return err
				},
				names: func() []string { return []string{label} }})
		},
	}
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the device for every boot (default: next boot only)")
	cmd.Flags().BoolVar(&efi, "efi", false, "UEFI boot (default: legacy BIOS)")
	addBMCFlags(cmd.Flags(), &bf)
	addOutputFlag(cmd, &out)
	return cmd
}
