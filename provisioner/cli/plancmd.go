package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/plan"
)

func newPlanCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var out output
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the rack's plan: roles, hostnames, node and BMC addresses",
		Long: `Print the rack's plan. Addresses and hostnames are allocated once per MAC and
kept in the state folder, so adding or removing rows never renumbers a machine.

The first plan (racker plan or racker bootstrap) saves the choices it was made
with — subnet, cluster name, controllers and their type, storage, exclusions and
bootstrap's answers — in STATE/plan.json; every later command reads them. A flag
that contradicts a saved choice is refused; --replan changes choices, after
showing every node it renames or renumbers and asking (or --yes).`,
		Example: `  # The plan of the rack in /usr/share/oem, saved on first use:
  racker plan
  racker plan --cluster-name prod --subnet 10.9.0.0/24

  # Rename the cluster later (shows what changes, asks first):
  racker plan --replan --cluster-name staging

  # For scripts:
  racker plan -o json
  racker plan -o name`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			_, p, err := env.MakePlan(&pf, true)
			if err != nil {
				return err
			}
			return out.print(env.Stdout, view{value: p,
				table: func(w io.Writer, wide bool) error { return printPlanTable(w, p, wide) },
				names: func() []string {
					var names []string
					for _, n := range p.All() {
						names = append(names, n.Hostname)
					}
					return names
				}})
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addReplanFlags(cmd.Flags(), &pf)
	addOutputFlag(cmd, &out)
	return cmd
}

// printPlanTable prints one machine a line; wide adds the secondary MAC and
// the plan index.
func printPlanTable(w io.Writer, p *plan.Plan, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "HOSTNAME\tROLE\tTYPE\tSTORAGE\tPRIMARY MAC\tIP\tBMC MAC\tBMC IP\tSECONDARY MAC\tINDEX")
	}
	if !wide {
		fmt.Fprintln(tw, "HOSTNAME\tROLE\tTYPE\tSTORAGE\tPRIMARY MAC\tIP\tBMC MAC\tBMC IP")
	}
	for _, n := range p.All() {
		storage, bmcIP := "", "-"
		if n.Storage {
			storage = "yes"
		}
		if n.BMCIP.IsValid() {
			bmcIP = n.BMCIP.String()
		}
		host := n.Hostname
		if host == "" {
			host = "-"
		}
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", host, n.Role, n.Type, storage, n.PrimaryMAC, n.IP, n.BMCMAC, bmcIP, n.SecondaryMAC, n.Index)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", host, n.Role, n.Type, storage, n.PrimaryMAC, n.IP, n.BMCMAC, bmcIP)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "subnet %s, %d controller(s), %d worker(s)\n", p.Subnet, len(p.Controllers()), len(p.Workers()))
	return err
}
