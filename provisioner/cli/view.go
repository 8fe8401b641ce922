package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/status"
)

// Terminal rendering of what the status package and the orchestrator
// report: racker status's table, and a run's progress table.

// writeStatusTable prints the status table; NOTE says why a node failed
// or was left out, or what its retries fail on.
func writeStatusTable(w io.Writer, nodes []status.Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tROLE\tPHASE\tBMC\tPOWER\tBOOT\tOS\tIP\tGEN\tLAST EVENT\tNOTE")
	for _, n := range nodes {
		bmc := "?"
		if n.BMCReachable != nil {
			bmc = map[bool]string{true: "ok", false: "no answer"}[*n.BMCReachable]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", dash(n.Hostname), n.PrimaryMAC, dash(n.Role), n.Phase,
			bmc, dash(n.Power), dash(n.BootDevice), dash(n.OS), dash(n.IP), n.InstallGeneration, lastEvent(n.LastEvent, n.LastEventAt, now),
			dash(clip(note(n.Phase, n.Reason, n.LastError), 90)))
	}
	return tw.Flush()
}

// writeProgress prints the live view of a run: phase, time in phase, last
// event, and the reason of failed or excluded nodes.
func writeProgress(w io.Writer, nodes []orchestrator.Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tPHASE\tIN PHASE\tLAST EVENT\tNOTE")
	counts := map[orchestrator.Phase]int{}
	for _, n := range nodes {
		counts[n.Phase]++
		nt := note(n.Phase, n.Reason, n.LastError)
		if n.Phase == orchestrator.Pending {
			nt = "waiting for a slot"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(n.Hostname), n.PrimaryMAC, n.Phase, ago(n.PhaseSince, now),
			lastEvent(n.LastEvent, n.LastEventAt, now), clip(nt, 90))
	}
	var parts []string
	for _, p := range []orchestrator.Phase{orchestrator.Booted, orchestrator.Ready, orchestrator.Excluded, orchestrator.Failed} {
		if counts[p] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[p], p))
		}
	}
	done := counts[orchestrator.Booted] + counts[orchestrator.Ready] + counts[orchestrator.Excluded] + counts[orchestrator.Failed]
	fmt.Fprintf(tw, "%d node(s): %s\n", len(nodes), strings.Join(append(parts, fmt.Sprintf("%d in progress", len(nodes)-done)), ", "))
	return tw.Flush()
}

// note is what a node's row says besides its phase: why it failed or was
// left out, or what its retries fail on.
func note(p orchestrator.Phase, reason, lastError string) string {
	switch {
	case reason != "":
		return reason
	case lastError != "" && !p.Terminal():
		return "retrying: " + lastError
	}
	return ""
}

func lastEvent(ev string, at, now time.Time) string {
	if ev == "" {
		return "-"
	}
	return clip(ev, 40) + " (" + ago(at, now) + " ago)"
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Truncate(time.Second).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
