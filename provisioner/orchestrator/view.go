package orchestrator

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// StatusNode is one node of `racker status -o json`; the field names are a
// stable interface.
type StatusNode struct {
	PrimaryMAC        string    `json:"primary_mac"`
	Hostname          string    `json:"hostname"`
	Role              string    `json:"role"`
	Phase             Phase     `json:"phase"`
	BMCReachable      *bool     `json:"bmc_reachable"` // null: never asked
	Power             string    `json:"power"`
	BootDevice        string    `json:"boot_device"`
	OS                string    `json:"os"`
	IP                string    `json:"ip"`
	LastEvent         string    `json:"last_event"`
	LastEventAt       time.Time `json:"last_event_at,omitzero"`
	InstallGeneration int       `json:"install_generation"`
}

// Status is the body of `racker status -o json`.
type Status struct {
	Nodes []StatusNode `json:"nodes"`
}

// WriteStatusTable prints the status table.
func WriteStatusTable(w io.Writer, nodes []StatusNode, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tROLE\tPHASE\tBMC\tPOWER\tBOOT\tOS\tIP\tGEN\tLAST EVENT")
	for _, n := range nodes {
		bmc := "?"
		if n.BMCReachable != nil {
			bmc = map[bool]string{true: "ok", false: "no answer"}[*n.BMCReachable]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", dash(n.Hostname), n.PrimaryMAC, dash(n.Role), n.Phase,
			bmc, dash(n.Power), dash(n.BootDevice), dash(n.OS), dash(n.IP), n.InstallGeneration, lastEvent(n.LastEvent, n.LastEventAt, now))
	}
	return tw.Flush()
}

// WriteProgress prints the live view of a run: phase, time in phase, last
// event, and the reason of failed or excluded nodes.
func WriteProgress(w io.Writer, nodes []Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tPRIMARY MAC\tPHASE\tIN PHASE\tLAST EVENT\tNOTE")
	counts := map[Phase]int{}
	for _, n := range nodes {
		counts[n.Phase]++
		note := n.Reason
		if note == "" && n.LastError != "" && !n.Phase.Terminal() {
			note = "retrying: " + n.LastError
		}
		if n.Phase == Pending {
			note = "waiting for a slot"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(n.Hostname), n.PrimaryMAC, n.Phase, ago(n.PhaseSince, now),
			lastEvent(n.LastEvent, n.LastEventAt, now), clip(note, 90))
	}
	var parts []string
	for _, p := range []Phase{Booted, Ready, Excluded, Failed} {
		if counts[p] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[p], p))
		}
	}
	fmt.Fprintf(tw, "%d node(s): %s\n", len(nodes), strings.Join(append(parts, fmt.Sprintf("%d in progress", len(nodes)-counts[Booted]-counts[Ready]-counts[Excluded]-counts[Failed])), ", "))
	return tw.Flush()
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
