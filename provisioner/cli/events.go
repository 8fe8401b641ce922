package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// A rack's history has two journals: the boot services' events (what each
// node and BMC did: DHCP, TFTP, iPXE, Ignition, callbacks; GET
// /api/v1/events) and the orchestrator's transitions (what Racker
// concluded: every phase change with its cause; STATE/provision-log.jsonl).
// racker events shows both, merged by time, as one timeline.

// timelineEntry is one line of racker events; its JSON form is a stable
// interface (fields are only ever added).
type timelineEntry struct {
	Time time.Time `json:"time"`
	// Node is the hostname (else the primary MAC) of the node the entry is
	// about; a BMC's events count as its node's.
	Node string `json:"node"`
	MAC  string `json:"mac"`
	// Source is "boot-services" (an event) or "racker" (a transition).
	Source string `json:"source"`
	// Kind is the event's kind (dhcp, ipxe, installed, …), or "transition".
	Kind string `json:"kind"`
	// From and To are a transition's phases.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Detail is the event's message or the transition's cause.
	Detail string `json:"detail,omitempty"`
	// BMC: the event came from the node's BMC (its DHCP lease).
	BMC bool `json:"bmc,omitempty"`
	// Seq is the event's sequence number at the boot services.
	Seq uint64 `json:"seq,omitempty"`
}

func newEventsCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var out output
	var follow bool
	var bootURL string
	var httpPort int
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "events [NODE]",
		Short: "Show the rack's timeline (one node's with NODE): boot-service events and Racker's transitions; -f follows",
		Long: `Show, merged by time, what the nodes did as the boot services saw it (DHCP,
TFTP, iPXE and Ignition fetches, install callbacks; a BMC's lease counts as its
node's) and what Racker concluded (every phase transition with its cause).
NODE is a primary MAC, BMC MAC, hostname or plan index. -f keeps following
both until interrupted.

The boot services' events need a running racker serve (or a bootstrap running
them); without one, Racker's transitions are shown alone, with a warning.`,
		Example: `  racker events
  racker events racker-worker-0
  racker events -f
  racker events --since 1h -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			_, p, err := env.MakePlan(&pf, false)
			if err != nil {
				return err
			}
			only := ""
			if len(args) == 1 {
				n, ok := p.Find(args[0])
				if !ok {
					return fmt.Errorf("node %q: not in the rack (give a primary MAC, BMC MAC, hostname or plan index; see racker plan)", args[0])
				}
				only = n.PrimaryMAC
			}
			boot := bootClient(bootURL, p.Management.IP, httpPort)
			tl := &timeline{env: env, plan: p, boot: boot, only: only}
			if since > 0 {
				tl.since = time.Now().Add(-since)
			}
			return tl.run(cmd.Context(), &out, follow)
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addOutputFlag(cmd, &out)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries until interrupted")
	cmd.Flags().DurationVar(&since, "since", 0, "only entries of this last while (e.g. 1h)")
	cmd.Flags().StringVar(&bootURL, "boot-services", "", "URL of the boot services' management views (default http://127.0.0.1:HTTP-PORT)")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port of the boot services")
	return cmd
}

// timeline reads both journals.
type timeline struct {
	env   *Env
	plan  *plan.Plan
	boot  *api.Client
	only  string // a primary MAC, or "" for every node
	since time.Time

	seq    uint64 // last boot-services event read
	logged int    // transitions read
	warned bool
}

// run prints the timeline so far and, with follow, what comes after.
func (tl *timeline) run(ctx context.Context, out *output, follow bool) error {
	first := true
	var all []timelineEntry
	for {
		entries, err := tl.next(ctx, !first && follow)
		if err != nil {
			return err
		}
		if !follow {
			all = append(all, entries...)
			break
		}
		if err := tl.printLines(out, entries, first); err != nil {
			return err
		}
		first = false
		if ctx.Err() != nil {
			return nil
		}
	}
	return out.print(tl.env.Stdout, view{value: all,
		table: func(w io.Writer, wide bool) error { return writeTimeline(w, all, wide, true) },
		names: func() []string { return entryNames(all) }})
}

// printLines prints entries as they come under --follow: JSON one object
// a line, YAML one document each, tables without a header after the first.
func (tl *timeline) printLines(out *output, entries []timelineEntry, header bool) error {
	w := tl.env.Stdout
	switch out.format {
	case "json":
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	case "yaml":
		for _, e := range entries {
			b, err := toYAML(e)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "---\n%s", b)
		}
		return nil
	case "name":
		for _, n := range entryNames(entries) {
			fmt.Fprintln(w, n)
		}
		return nil
	}
	if len(entries) == 0 && !header {
		return nil
	}
	return writeTimeline(w, entries, out.wide(), header)
}

// next reads what both journals hold after what was read; wait long-polls
// the boot services for a while (following).
func (tl *timeline) next(ctx context.Context, wait bool) ([]timelineEntry, error) {
	names := map[string]string{} // primary or BMC MAC → node name
	byBMC := map[string]string{} // BMC MAC → primary MAC
	for _, n := range tl.plan.All() {
		name := n.Hostname
		if name == "" {
			name = n.PrimaryMAC
		}
		names[n.PrimaryMAC], names[n.BMCMAC] = name, name
		byBMC[n.BMCMAC] = n.PrimaryMAC
	}
	var out []timelineEntry
	keep := func(e timelineEntry) {
		if tl.only != "" && e.MAC != tl.only {
			return
		}
		if !tl.since.IsZero() && e.Time.Before(tl.since) {
			return
		}
		if e.Node == "" {
			e.Node = names[e.MAC]
		}
		if e.Node == "" {
			e.Node = e.MAC
		}
		out = append(out, e)
	}

	// The boot services' events, page by page.
	for {
		w := time.Duration(0)
		if wait && len(out) == 0 {
			w = 2 * time.Second
		}
		// Bounded: an address nothing answers on must not hang the command.
		cctx, cancel := context.WithTimeout(ctx, w+5*time.Second)
		evs, err := tl.boot.Events(cctx, tl.seq, w)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return out, nil
			}
			if !tl.warned {
				tl.warned = true
				tl.env.Logger().Warn("the boot services do not answer: showing Racker's transitions only", "err", err)
			}
			if wait {
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
			break
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			tl.seq = ev.Seq
			e := timelineEntry{Time: ev.Time, MAC: ev.MAC, Source: "boot-services", Kind: string(ev.Kind), Detail: ev.Message, Seq: ev.Seq}
			if p, ok := byBMC[ev.MAC]; ok {
				e.MAC, e.BMC = p, true
			}
			keep(e)
		}
		wait = false
	}

	// Racker's transitions.
	ts, err := orchestrator.ReadLog(tl.env.StateDir)
	if err != nil {
		return nil, fmt.Errorf("reading Racker's transitions: %w", err)
	}
	if tl.logged > len(ts) {
		tl.logged = 0 // the log was replaced (factory reset)
	}
	for _, t := range ts[tl.logged:] {
		keep(timelineEntry{Time: t.Time, Node: t.Hostname, MAC: t.MAC, Source: "racker", Kind: "transition",
			From: string(t.From), To: string(t.To), Detail: t.Cause})
	}
	tl.logged = len(ts)
	slices.SortStableFunc(out, func(a, b timelineEntry) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// writeTimeline prints entries; wide adds the MAC and the event's sequence.
func writeTimeline(w io.Writer, entries []timelineEntry, wide, header bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if header {
		if wide {
			fmt.Fprintln(tw, "TIME\tNODE\tMAC\tSOURCE\tSEQ\tWHAT\tDETAIL")
		} else {
			fmt.Fprintln(tw, "TIME\tNODE\tWHAT\tDETAIL")
		}
	}
	for _, e := range entries {
		what := e.Kind
		if e.Kind == "transition" {
			what = e.From + " → " + e.To
		} else if e.BMC {
			what = "bmc " + e.Kind
		}
		detail := dash(oneLine(e.Detail))
		ts := e.Time.Local().Format("2006-01-02 15:04:05")
		if wide {
			seq := "-"
			if e.Seq > 0 {
				seq = fmt.Sprint(e.Seq)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ts, e.Node, e.MAC, e.Source, seq, what, detail)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ts, e.Node, what, clip(detail, 100))
	}
	return tw.Flush()
}

func entryNames(entries []timelineEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Node)
	}
	return out
}

// lastEvents are the newest n boot-services events of one node (its BMC's
// included), for racker describe.
func lastEvents(ctx context.Context, boot *api.Client, n plan.Node, max int) ([]api.Event, error) {
	var out []api.Event
	after := uint64(0)
	for {
		evs, err := boot.Events(ctx, after, 0)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			after = ev.Seq
			if ev.MAC == n.PrimaryMAC || ev.MAC == n.BMCMAC || strings.EqualFold(ev.MAC, n.SecondaryMAC) {
				out = append(out, ev)
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}
