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

// writeStatusTable prints the status table: what fits a terminal (NOTE
// says why a node failed or was left out, or what its retries fail on),
// or with wide every column and the reason and last error in full.
func writeStatusTable(w io.Writer, nodes []status.Node, now time.Time, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tROLE\tPHASE\tIN PHASE\tBMC\tPOWER\tBOOT\tOS\tIP\tGEN\tFAILURES\tLAST EVENT\tREASON\tLAST ERROR")
	} else {
		fmt.Fprintln(tw, "HOSTNAME\tROLE\tPHASE\tIN PHASE\tBMC\tPOWER\tLAST EVENT\tNOTE")
	}
	for _, n := range nodes {
		bmc := "?"
		if n.BMCReachable != nil {
			bmc = map[bool]string{true: "ok", false: "no answer"}[*n.BMCReachable]
		}
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", dash(n.Hostname), n.PrimaryMAC, dash(n.Role), n.Phase,
				ago(n.PhaseSince, now), bmc, dash(n.Power), dash(n.BootDevice), dash(n.OS), dash(n.IP), n.InstallGeneration, n.Failures,
				lastEvent(n.LastEvent, n.LastEventAt, now), dash(oneLine(n.Reason)), dash(oneLine(n.LastError)))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(n.Hostname), dash(n.Role), n.Phase, ago(n.PhaseSince, now),
			bmc, dash(n.Power), lastEvent(n.LastEvent, n.LastEventAt, now), dash(clip(note(n.Phase, n.Reason, n.LastError), 90)))
	}
	return tw.Flush()
}

// writeProgress prints the live view of a run: phase, time in phase, last
// event, and the reason of failed or excluded nodes. rows > 0 bounds the
// node rows (a terminal's height): failed nodes first, then those in
// flight, then the rest; the summary line counts every node.
func writeProgress(w io.Writer, nodes []orchestrator.Node, now time.Time, rows int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tPHASE\tIN PHASE\tLAST EVENT\tNOTE")
	counts := map[orchestrator.Phase]int{}
	for _, n := range nodes {
		counts[n.Phase]++
	}
	shown := pickRows(nodes, rows)
	for _, n := range shown {
		nt := note(n.Phase, n.Reason, n.LastError)
		if n.Phase == orchestrator.Pending {
			nt = "waiting for a slot"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(n.Hostname), n.PrimaryMAC, n.Phase, ago(n.PhaseSince, now),
			lastEvent(n.LastEvent, n.LastEventAt, now), clip(nt, 90))
	}
	if hidden := len(nodes) - len(shown); hidden > 0 {
		fmt.Fprintf(tw, "… %d more node(s) not shown (racker status lists them all)\n", hidden)
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

// pickRows keeps at most max nodes (all when max <= 0 or they fit), in
// their order, preferring failed nodes, then nodes in flight, then pending
// ones, then those done.
func pickRows(nodes []orchestrator.Node, max int) []orchestrator.Node {
	if max <= 0 || len(nodes) <= max {
		return nodes
	}
	rank := func(n orchestrator.Node) int {
		switch {
		case n.Phase == orchestrator.Failed:
			return 0
		case !n.Phase.Terminal() && n.Phase != orchestrator.Pending:
			return 1
		case n.Phase == orchestrator.Pending:
			return 2
		}
		return 3
	}
	keep := map[int]bool{}
	for r := 0; r <= 3 && len(keep) < max; r++ {
		for i, n := range nodes {
			if rank(n) == r && len(keep) < max {
				keep[i] = true
			}
		}
	}
	var out []orchestrator.Node
	for i, n := range nodes {
		if keep[i] {
			out = append(out, n)
		}
	}
	return out
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
	return clipRunes(oneLine(s), n)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
