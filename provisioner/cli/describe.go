package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/consolelog"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/status"
)

// description is one node's whole story, racker describe's output; its
// JSON form is a stable interface (fields are only ever added).
type description struct {
	Plan   plan.Node   `json:"plan"`
	Status status.Node `json:"status"`
	// Transitions are every phase change Racker logged for the node.
	Transitions []orchestrator.Transition `json:"transitions"`
	// Events are the boot services' newest events of the node and its BMC
	// (absent when they do not answer: EventsError says why).
	Events      []api.Event `json:"events"`
	EventsError string      `json:"events_error,omitempty"`
	// BMC is what the node's BMC reports now (BMCError when it did not).
	BMC      *bmc.Diagnostics `json:"bmc,omitempty"`
	BMCError string           `json:"bmc_error,omitempty"`
	// ConsoleLog is the node's recorded console; ConsoleTail its last lines.
	ConsoleLog  string `json:"console_log"`
	ConsoleTail string `json:"console_tail"`
}

func newDescribeCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var out output
	var bootURL, driver string
	var httpPort, tail, events int
	var noBMC bool
	cmd := &cobra.Command{
		Use:   "describe NODE",
		Short: "Show one node's whole story: plan entry, state, every transition, boot-service events, BMC, console tail",
		Long: `Show everything Racker knows about one node, to explain what happened to it:
its plan entry; its state (phase and time in it, the failure reason and last
error); every phase transition Racker logged, with its cause and time; the boot
services' newest events of the node and its BMC; what the BMC reports now
(power, boot flags, device); and the tail of the node's console as bootstrap
and reprovision recorded it (STATE/console/HOSTNAME.log).

NODE is a primary MAC, BMC MAC, hostname or plan index. docs/manual/troubleshooting.md
says what to do about each failure reason.`,
		Example: `  racker describe racker-worker-0
  racker describe 00:11:22:33:44:20 --tail 100
  racker describe racker-worker-0 -o json | jq .transitions`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			d, err := describeNode(cmd.Context(), env, &pf, args[0], describeOpts{bootURL: bootURL, httpPort: httpPort,
				driver: driver, tail: tail, events: events, noBMC: noBMC})
			if err != nil {
				return err
			}
			return out.print(env.Stdout, view{value: d,
				table: func(w io.Writer, wide bool) error { return writeDescription(w, d, wide, time.Now()) },
				names: func() []string { return []string{d.Plan.Hostname} }})
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	addOutputFlag(cmd, &out)
	cmd.Flags().IntVar(&tail, "tail", 30, "console lines to show")
	cmd.Flags().IntVar(&events, "events", 20, "boot-service events to show")
	cmd.Flags().BoolVar(&noBMC, "no-bmc", false, "do not ask the BMC")
	cmd.Flags().StringVar(&driver, "bmc-driver", "", bmcDriverHelp)
	cmd.Flags().StringVar(&bootURL, "boot-services", "", "URL of the boot services' management views (default http://127.0.0.1:HTTP-PORT)")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port of the boot services")
	return cmd
}

type describeOpts struct {
	bootURL      string
	httpPort     int
	driver       string
	tail, events int
	noBMC        bool
}

// describeNode gathers a node's story. Only an unknown node or unreadable
// state fail it; the boot services and the BMC may be down, and say so.
func describeNode(ctx context.Context, env *Env, pf *PlanFlags, name string, o describeOpts) (*description, error) {
	_, p, err := env.MakePlan(pf, false)
	if err != nil {
		return nil, err
	}
	n, ok := p.Find(name)
	if !ok {
		return nil, fmt.Errorf("node %q: not in the rack (give a primary MAC, BMC MAC, hostname or plan index; see racker plan)", name)
	}
	d := &description{Plan: n, Transitions: []orchestrator.Transition{}, Events: []api.Event{}}
	boot := bootClient(o.bootURL, p.Management.IP, o.httpPort)
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	st, err := status.Collect(sctx, status.Sources{StateDir: env.StateDir, Plan: p, Boot: boot, Logger: env.Logger()})
	cancel()
	if err != nil {
		return nil, err
	}
	d.Status = status.Node{PrimaryMAC: n.PrimaryMAC, Hostname: n.Hostname, Role: string(n.Role), Phase: orchestrator.Pending}
	for _, s := range st.Nodes {
		if s.PrimaryMAC == n.PrimaryMAC {
			d.Status = s
		}
	}
	ts, err := orchestrator.ReadLog(env.StateDir)
	if err != nil {
		return nil, fmt.Errorf("reading Racker's transitions: %w", err)
	}
	for _, t := range ts {
		if t.MAC == n.PrimaryMAC {
			d.Transitions = append(d.Transitions, t)
		}
	}
	ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
	evs, err := lastEvents(ectx, boot, n, o.events)
	cancel()
	if err != nil {
		d.EventsError = err.Error()
	} else {
		d.Events = evs
	}
	if !o.noBMC && n.Role != plan.Management {
		bctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		bf := &bmcFlags{driver: o.driver, bootURL: o.bootURL, plan: *pf}
		t, err := env.resolveBMC(bctx, bf, n.PrimaryMAC)
		if err == nil {
			t.opts.Tries = 2
			var c bmc.Controller
			if c, err = bmc.Open(bctx, t.url, t.opts); err == nil {
				var diag bmc.Diagnostics
				diag, err = c.Diag(bctx)
				c.Close()
				if err == nil {
					d.BMC = &diag
				}
			}
		}
		cancel()
		if err != nil {
			d.BMCError = err.Error()
		}
	}
	logName := n.Hostname
	if logName == "" {
		logName = n.PrimaryMAC
	}
	d.ConsoleLog = consolelog.Path(env.StateDir, logName)
	tailText, err := consolelog.Tail(d.ConsoleLog, o.tail)
	if err != nil {
		return nil, err
	}
	d.ConsoleTail = printable(tailText)
	return d, nil
}

// writeDescription prints the story, section by section.
func writeDescription(w io.Writer, d *description, wide bool, now time.Time) error {
	n, s := d.Plan, d.Status
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	field := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, dash(v)) }
	field("Name", n.Hostname)
	field("Role", string(n.Role)+", type "+n.Type+map[bool]string{true: ", storage", false: ""}[n.Storage])
	field("Primary MAC", n.PrimaryMAC)
	field("Secondary MAC", n.SecondaryMAC)
	field("Address", addrOrDash(n.IP.String(), n.IP.IsValid()))
	field("BMC", n.BMCMAC+" at "+addrOrDash(n.BMCIP.String(), n.BMCIP.IsValid()))
	phase := string(s.Phase)
	if !s.PhaseSince.IsZero() {
		phase += " for " + ago(s.PhaseSince, now) + " (since " + s.PhaseSince.Local().Format("2006-01-02 15:04:05") + ")"
	}
	field("Phase", phase)
	if s.Reason != "" {
		field("Reason", oneLine(s.Reason))
	}
	if s.LastError != "" {
		field("Last error", oneLine(s.LastError))
	}
	if s.Failures > 0 {
		field("Failures", fmt.Sprint(s.Failures))
	}
	field("Power", s.Power)
	field("Boot device", s.BootDevice)
	field("OS", s.OS)
	field("Install generation", fmt.Sprint(s.InstallGeneration))
	field("Last event", lastEvent(s.LastEvent, s.LastEventAt, now))
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nTransitions (%d):\n", len(d.Transitions))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(d.Transitions) == 0 {
		fmt.Fprintln(tw, "  none: no bootstrap or reprovision has run with this node")
	}
	for _, t := range d.Transitions {
		cause := oneLine(t.Cause)
		if !wide {
			cause = clip(cause, 100)
		}
		fmt.Fprintf(tw, "  %s\t%s → %s\t%s\n", t.Time.Local().Format("2006-01-02 15:04:05"), t.From, t.To, cause)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nBoot-service events (newest %d):\n", len(d.Events))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if d.EventsError != "" {
		fmt.Fprintf(tw, "  unavailable: %s\n", oneLine(d.EventsError))
	}
	for _, ev := range d.Events {
		what := string(ev.Kind)
		if ev.MAC == n.BMCMAC {
			what = "bmc " + what
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", ev.Time.Local().Format("2006-01-02 15:04:05"), what, dash(oneLine(ev.Message)))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nBMC:")
	switch {
	case d.BMC != nil:
		b := d.BMC
		fmt.Fprintf(w, "  %s at %s, %s; power %s", b.Driver, b.Address, dash(b.Protocol), b.Power)
		if b.BootKnown {
			fmt.Fprintf(w, ", boot flags %s", b.Boot)
		}
		fmt.Fprintln(w)
		if b.Firmware != "" {
			fmt.Fprintf(w, "  device id %d rev %d, firmware %s, IPMI %s, SOL %v\n", b.DeviceID, b.DeviceRevision, b.Firmware, b.IPMIVersion, b.SOLAvailable)
		}
		for _, p := range b.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	case d.BMCError != "":
		fmt.Fprintf(w, "  no answer: %s\n", oneLine(d.BMCError))
	default:
		fmt.Fprintln(w, "  not asked")
	}

	fmt.Fprintf(w, "\nConsole (%s):\n", d.ConsoleLog)
	if d.ConsoleTail == "" {
		fmt.Fprintln(w, "  nothing recorded yet (bootstrap and reprovision record it)")
		return nil
	}
	for _, l := range strings.Split(strings.TrimRight(d.ConsoleTail, "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", l)
	}
	return nil
}

// printable drops what a console prints for a terminal and not for a
// reader: escape sequences (colours, cursor moves) and control characters
// other than newline and tab.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			// CSI: ESC [ params final; other escapes: ESC and one byte.
			if i+1 < len(s) && s[i+1] == '[' {
				j := i + 2
				for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
					j++
				}
				i = j
			} else {
				i++
			}
		case c == '\n' || c == '\t' || c >= 0x20 && c != 0x7f:
			b.WriteByte(c)
		}
	}
	return b.String()
}
