package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/status"
)

func newStatusCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var out output
	var bootURL string
	var watch bool
	var interval time.Duration
	var httpPort int
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node: role, phase and time in it, BMC, power, last event, why it failed",
		Long: `Show each node's provisioning state as Racker recorded it, with the boot
services' newer observations when they answer. It reads the state without
locking it, so it works while racker bootstrap runs.

The table fits a terminal; NOTE says why a node failed or was left out, or what
its retries fail on. -o wide adds the primary MAC, boot device, OS, address,
install generation and failure count, and prints the reason and the last error
in full.

-o json prints {"nodes": [{"primary_mac", "hostname", "role", "phase",
"phase_since", "in_phase_seconds", "bmc_reachable", "power", "boot_device",
"os", "ip", "last_event", "last_event_at", "install_generation", "reason",
"last_error", "failures"}]}; in_phase_seconds, reason, last_error and failures
only when set. The phases are in docs/phases.md; what to do about each failure
reason is in docs/manual/troubleshooting.md.`,
		Example: `  racker status
  racker status -o wide
  racker status --watch

  # Which nodes failed, and why:
  racker status -o json | jq -r '.nodes[] | select(.reason) | "\(.hostname): \(.reason)"'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			for {
				st, err := collectStatus(cmd.Context(), env, &pf, bootURL, httpPort)
				if err != nil {
					return err
				}
				if err := printStatus(env, &out, st, watch); err != nil {
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
				if !env.Interactive() && (out.format == "table" || out.format == "wide") {
					fmt.Fprintln(env.Stdout)
				}
			}
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addOutputFlag(cmd, &out)
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	cmd.Flags().StringVar(&bootURL, "boot-services", "", "URL of the boot services' management views (default http://127.0.0.1:HTTP-PORT)")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port of the boot services")
	return cmd
}

// printStatus prints one status; under --watch on a terminal it redraws the
// screen, fitted to it, and JSON is one line per refresh.
func printStatus(env *Env, out *output, st status.Status, watch bool) error {
	onTerminal := watch && env.Interactive()
	if out.format == "json" && watch {
		return json.NewEncoder(env.Stdout).Encode(st)
	}
	var b strings.Builder
	err := out.print(&b, view{value: st,
		table: func(w io.Writer, wide bool) error { return writeStatusTable(w, st.Nodes, time.Now(), wide) },
		names: func() []string {
			var names []string
			for _, n := range st.Nodes {
				names = append(names, n.Hostname)
			}
			return names
		}})
	if err != nil {
		return err
	}
	text := b.String()
	if out.format == "table" || out.format == "wide" {
		width, height := env.termSize()
		text = fitWidth(text, width)
		if onTerminal && height > 1 {
			if lines := strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n"); len(lines) > height-1 {
				text = strings.Join(lines[:height-2], "") + fitWidth(fmt.Sprintf("… %d more line(s); make the terminal taller, or drop --watch\n", len(lines)-height+2), width)
			}
		}
	}
	if onTerminal {
		text = "\x1b[H\x1b[2J" + text
	}
	_, err = io.WriteString(env.Stdout, text)
	return err
}

// collectStatus asks the status package for the merged view: the plan
// (a dry run: status never writes), the orchestrator's records, and the
// boot services when they answer within a second.
func collectStatus(ctx context.Context, env *Env, pf *PlanFlags, bootURL string, httpPort int) (status.Status, error) {
	src := status.Sources{StateDir: env.StateDir, Logger: env.Logger()}
	if _, p, err := env.MakePlan(pf, false); err == nil {
		src.Plan = p
		if bootURL == "" {
			bootURL = managementURL(httpPort)
		}
		src.Boot = api.NewClient(bootURL)
	} else {
		env.Logger().Debug("no plan: showing the recorded state only", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return status.Collect(ctx, src)
}
