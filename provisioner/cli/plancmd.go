package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/plan"
)

func newPlanCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var output string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the rack's plan: roles, hostnames, node and BMC addresses",
		Long: `Print the rack's plan. Addresses and hostnames are allocated once per MAC and
kept in the state folder, so adding or removing rows never renumbers a machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, p, err := env.MakePlan(&pf, true)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(p)
			case "table":
				printPlanTable(env, p)
				return nil
			}
			return fmt.Errorf("-o %q: want table or json", output)
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printPlanTable(env *Env, p *plan.Plan) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tROLE\tTYPE\tSTORAGE\tPRIMARY MAC\tIP\tBMC MAC\tBMC IP")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", host, n.Role, n.Type, storage, n.PrimaryMAC, n.IP, n.BMCMAC, bmcIP)
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "subnet %s, %d controller(s), %d worker(s)\n", p.Subnet, len(p.Controllers()), len(p.Workers()))
}
