package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

func init() { register(newStatusCmd) }

func newStatusCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var output, bootURL string
	var watch bool
	var interval time.Duration
	var httpPort int
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node: role, BMC, power, boot device, phase, OS, address, last event",
		Long: `Show each node's provisioning state as Racker recorded it, with the boot
services' newer observations when they answer. It reads the state without
locking it, so it works while racker bootstrap runs.

-o json prints {"nodes": [{"primary_mac", "hostname", "role", "phase",
"bmc_reachable", "power", "boot_device", "os", "ip", "last_event",
"last_event_at", "install_generation"}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			for {
				st, err := collectStatus(cmd.Context(), env, &pf, bootURL, httpPort)
				if err != nil {
					return err
				}
				if watch && env.Interactive() {
					fmt.Fprint(env.Stdout, "\x1b[H\x1b[2J")
				}
				if output == "json" {
					enc := json.NewEncoder(env.Stdout)
					if !watch {
						enc.SetIndent("", "  ")
					}
					if err := enc.Encode(st); err != nil {
						return err
					}
				} else if err := orchestrator.WriteStatusTable(env.Stdout, st.Nodes, time.Now()); err != nil {
					return err
				}
				if !watch {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
				if !env.Interactive() && output == "table" {
					fmt.Fprintln(env.Stdout)
				}
			}
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	cmd.Flags().StringVar(&bootURL, "boot-services", "", "URL of the boot services (default http://MANAGEMENT-ADDRESS:HTTP-PORT)")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port of the boot services")
	return cmd
}

// collectStatus merges the plan (roles, addresses), the orchestrator's
// persisted records and, when they answer within a second, the boot
// services' observations (fresher events, install generations, and
// progress of nodes no run is watching, e.g. after reprovision --no-wait).
func collectStatus(ctx context.Context, env *Env, pf *PlanFlags, bootURL string, httpPort int) (orchestrator.Status, error) {
	st, err := orchestrator.Load(env.StateDir)
	if err != nil {
		return orchestrator.Status{}, err
	}
	var p *plan.Plan
	if _, pp, err := env.MakePlan(pf, false); err == nil {
		p = pp
	} else {
		env.Logger().Debug("no plan: showing the recorded state only", "err", err)
	}
	byMAC := map[string]*orchestrator.StatusNode{}
	var order []string
	add := func(mac string) *orchestrator.StatusNode {
		if s, ok := byMAC[mac]; ok {
			return s
		}
		s := &orchestrator.StatusNode{PrimaryMAC: mac, Phase: orchestrator.Pending}
		byMAC[mac] = s
		order = append(order, mac)
		return s
	}
	if p != nil {
		for _, n := range p.Servers() {
			s := add(n.PrimaryMAC)
			s.Hostname, s.Role = n.Hostname, string(n.Role)
			if n.IP.IsValid() {
				s.IP = n.IP.String()
			}
			if n.Role == plan.Excluded {
				s.Phase = orchestrator.Excluded
			}
		}
	}
	since := map[string]time.Time{}
	for _, n := range st.Sorted() {
		since[n.PrimaryMAC] = n.PhaseSince
		s := add(n.PrimaryMAC)
		if s.Hostname == "" {
			s.Hostname, s.Role = n.Hostname, n.Role
		}
		s.Phase, s.BMCReachable, s.Power, s.BootDevice, s.OS = n.Phase, n.BMCReachable, n.Power, n.BootDevice, n.OS
		s.LastEvent, s.LastEventAt, s.InstallGeneration = n.LastEvent, n.LastEventAt, n.InstallGeneration
	}
	if p != nil {
		mergeRemote(ctx, env, p, bootURL, httpPort, byMAC, since)
	}
	out := orchestrator.Status{Nodes: []orchestrator.StatusNode{}}
	for _, mac := range order {
		out.Nodes = append(out.Nodes, *byMAC[mac])
	}
	sort.SliceStable(out.Nodes, func(i, j int) bool { return out.Nodes[i].Hostname < out.Nodes[j].Hostname })
	return out, nil
}

// remotePhase maps the boot services' observation onto the state machine's
// phases, for nodes whose recorded phase is behind it.
var remotePhase = map[api.Phase]orchestrator.Phase{
	api.PhaseNetbooting: orchestrator.Netbooting, api.PhaseInstalling: orchestrator.Installing,
	api.PhaseInstalled: orchestrator.Installed, api.PhaseBooted: orchestrator.Booted,
}

// Only observations made after the node's last recorded transition count:
// the boot services keep a node's old phase across a reinstall request.
func mergeRemote(ctx context.Context, env *Env, p *plan.Plan, bootURL string, httpPort int, byMAC map[string]*orchestrator.StatusNode, since map[string]time.Time) {
	if bootURL == "" {
		bootURL = "http://" + netip.AddrPortFrom(p.Management.IP, uint16(httpPort)).String()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	remote, err := api.NewClient(bootURL).Nodes(ctx)
	if err != nil {
		env.Logger().Debug("boot services not answering; showing the recorded state", "url", bootURL, "err", err)
		return
	}
	for _, rn := range remote {
		s := byMAC[rn.PrimaryMAC]
		if s == nil {
			continue
		}
		if rn.InstallGeneration > s.InstallGeneration {
			s.InstallGeneration = rn.InstallGeneration
		}
		if rn.LastEventAt.After(s.LastEventAt) && rn.LastEvent != "" {
			s.LastEvent, s.LastEventAt = string(rn.LastEvent), rn.LastEventAt
		}
		if rp, ok := remotePhase[rn.Phase]; ok && s.Phase.Rank() > 0 && rp.Rank() > s.Phase.Rank() && rn.LastEventAt.After(since[rn.PrimaryMAC]) {
			s.Phase = rp
		}
	}
}
