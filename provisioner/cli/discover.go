package cli

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/inventory"
)

func newDiscoverCmd(env *Env) *cobra.Command {
	var duration time.Duration
	var port int
	cmd := &cobra.Command{
		Use: "discover",
		Example: `  # Power the rack on, then listen for two minutes:
  racker factory discover --pxe-interface eth1 --duration 2m > nodes.csv.draft`,
		Short: "List the MACs asking for DHCP on the PXE interface, as a draft nodes.csv",
		Long: `Listen on the PXE interface without answering and print every MAC that asks
for DHCP, as a draft nodes.csv to edit: netboot firmware (vendor class PXEClient
or HTTPClient, user class iPXE, a client architecture) is listed as a primary
MAC, anything else (a BMC, an OS) as a BMC MAC. Power the rack on, run this,
then pair each node's MACs and set the node types. Ctrl-C stops listening
early and prints what was heard.

The interface is --pxe-interface, or the one nodes.csv names when it can be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ifname := env.PXEInterface
			if ifname == "" {
				inv, err := env.LoadInventory()
				if err != nil || inv.PXEInterface == "" {
					return fmt.Errorf("factory discover: which interface? pass --pxe-interface (nodes.csv did not name one: %v)", err)
				}
				ifname = inv.PXEInterface
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), duration)
			defer cancel()
			// Ctrl-C (or SIGTERM) ends the listening early; the draft is printed anyway.
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			seen := map[string]bootsvc.Seen{}
			var order []string
			err := bootsvc.Discover(ctx, ifname, port, env.Logger().With("duration", duration), func(s bootsvc.Seen) {
				if _, ok := seen[s.MAC]; !ok {
					order = append(order, s.MAC)
					env.Logger().Info("seen", "mac", s.MAC, "vendor_class", s.VendorClass, "user_class", s.UserClass)
				}
				seen[s.MAC] = s
			})
			if err != nil {
				return fmt.Errorf("factory discover: %w", err)
			}
			all := make([]bootsvc.Seen, 0, len(order))
			for _, mac := range order {
				all = append(all, seen[mac])
			}
			writeDraftCSV(env.Stdout, ifname, duration, all)
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", time.Minute, "how long to listen")
	cmd.Flags().IntVar(&port, "port", 67, "UDP port to listen on")
	cmd.Flags().MarkHidden("port")
	return cmd
}

// writeDraftCSV prints the MACs as nodes.csv rows: netboot firmware as
// primary MACs, the rest as BMC MACs, each with what it said in Comments.
func writeDraftCSV(w io.Writer, ifname string, d time.Duration, all []bootsvc.Seen) {
	sort.SliceStable(all, func(i, j int) bool { return all[i].Netboot() && !all[j].Netboot() })
	fmt.Fprintf(w, "# racker factory discover: %d MAC(s) asked for DHCP on %s in %s.\n", len(all), ifname, d)
	fmt.Fprintln(w, "# Draft: pair each node's primary MAC with its BMC and secondary MAC, set the node types.")
	fmt.Fprintln(w, inventory.Header)
	for _, s := range all {
		var what []string
		if s.VendorClass != "" {
			what = append(what, "vendor class "+s.VendorClass)
		}
		if s.UserClass != "" {
			what = append(what, "user class "+s.UserClass)
		}
		if s.Arch >= 0 {
			what = append(what, fmt.Sprintf("arch %d", s.Arch))
		}
		if s.Hostname != "" {
			what = append(what, "hostname "+s.Hostname)
		}
		comment := strings.ReplaceAll(strings.Join(what, "; "), ",", " ")
		if s.Netboot() {
			fmt.Fprintf(w, "%s, , , %s, netboot firmware: %s\n", s.MAC, inventory.DefaultType, comment)
		} else {
			fmt.Fprintf(w, ", %s, , %s, not netboot (a BMC?): %s\n", s.MAC, inventory.DefaultType, comment)
		}
	}
}
