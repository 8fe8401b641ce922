package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// row is one figure of the results table: Racker's value, the peer's, and
// their ratio, oriented so that a ratio above 1 means Racker is ahead.
type row struct {
	Section string  `json:"section"`
	Figure  string  `json:"figure"`
	Unit    string  `json:"unit"`
	Racker  float64 `json:"racker"`
	Peer    float64 `json:"peer"`
	PeerIs  string  `json:"peer_is"`
	// HigherIsBetter orients the ratio.
	HigherIsBetter bool    `json:"higher_is_better"`
	Ratio          float64 `json:"ratio"` // >1: Racker ahead
	Note           string  `json:"note,omitempty"`
}

type results struct {
	Mode string `json:"mode"`
	Rows []row  `json:"rows"`
}

func (r *results) add(x row) {
	switch {
	case x.Peer == 0 || x.Racker == 0:
		x.Ratio = 0
	case x.HigherIsBetter:
		x.Ratio = x.Racker / x.Peer
	default:
		x.Ratio = x.Peer / x.Racker
	}
	r.Rows = append(r.Rows, x)
	fmt.Fprintf(os.Stderr, "bench: %s: %s: racker %s, %s %s\n", x.Section, x.Figure, num(x.Racker, x.Unit), x.PeerIs, num(x.Peer, x.Unit))
}

func num(v float64, unit string) string {
	switch {
	case unit == "":
		return fmt.Sprintf("%.0f", v)
	case v == 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

func (r *results) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FIGURE\tRACKER\tPEER\tRATIO\tPEER IS\t")
	section := ""
	for _, x := range r.Rows {
		if x.Section != section {
			section = x.Section
			fmt.Fprintf(tw, "%s\t\t\t\t\t\n", "— "+section)
		}
		ratio := "-"
		if x.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", x.Ratio)
		}
		fig := x.Figure
		if x.Note != "" {
			fig += " (" + x.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", fig, num(x.Racker, x.Unit), num(x.Peer, x.Unit), ratio, x.PeerIs)
	}
	tw.Flush()
	fmt.Fprintln(w, "ratio > 1: Racker ahead of the peer (throughput: racker/peer; latency, time, memory: peer/racker)")
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
