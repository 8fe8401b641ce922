package simcli

import (
	"net/netip"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
	"github.com/racker/racker/simulator/vbmc"
)

func init() { register(newVBMCCmd) }

// newVBMCCmd is the hidden command `up` runs inside each BMC's namespace: one
// virtual BMC for one server. Credentials come from the rack's OEM files, by
// path, never on the command line.
func newVBMCCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:    "vbmc NODE",
		Short:  "Run the virtual BMC of a server (started by up inside the BMC's namespace)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			m, err := s.Machine(args[0])
			if err != nil {
				return err
			}
			addrFile := s.BMCAddrFile(m.Name)
			_ = os.Remove(addrFile)
			// status shows where the BMC answers; written atomically.
			writeAddr := func(a netip.AddrPort) {
				tmp := addrFile + ".tmp"
				if err := os.WriteFile(tmp, []byte(a.Addr().String()+"\n"), 0o644); err == nil {
					_ = os.Rename(tmp, addrFile)
				}
			}
			cert, key := s.RedfishCert(m.Name)
			cfg := vbmc.Config{
				Protocols:       m.VBMCProtocols(),
				TLSCertFile:     cert,
				TLSKeyFile:      key,
				Name:            m.Name,
				Domain:          s.Domain(m.Name),
				PrimaryMAC:      m.PrimaryMAC,
				Interface:       rack.BMCIface,
				ConsoleSocket:   s.ConsoleSocket(m.Name),
				UserFile:        filepath.Join(s.OEMDir(), "ipmi_user"),
				PasswordFile:    filepath.Join(s.OEMDir(), "ipmi_password"),
				Logger:          env.Logger().With("bmc_mac", m.BMCMAC),
				OnListen:        writeAddr,
				OnRedfishListen: writeAddr, // the same address; a Redfish-only BMC has only this one
			}
			return vbmc.Run(cmd.Context(), cfg) // its errors name the node

		},
	}
}
