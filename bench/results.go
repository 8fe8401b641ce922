package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// row is one figure of the results table: Racker's value, the peer's (or
// the limit it is held against), and their ratio, oriented so that a ratio
// above 1 means Racker is ahead.
type row struct {
	Section string  `json:"section"`
	Figure  string  `json:"figure"`
	Unit    string  `json:"unit"`
	Racker  float64 `json:"racker"`
	Peer    float64 `json:"peer"`
	// PeerIs names what Peer is: a program run side by side ("dnsmasq"),
	// or a limit ("bound: 3 BMC operations × 50 ms × 1,000 nodes").
	PeerIs string `json:"peer_is"`
	// HigherIsBetter orients the ratio.
	HigherIsBetter bool    `json:"higher_is_better"`
	Ratio          float64 `json:"ratio"` // >1: Racker ahead
	Note           string  `json:"note,omitempty"`
	// RackerRuns and PeerRuns are every run's value when the row is a
	// median of several.
	RackerRuns []float64 `json:"racker_runs,omitempty"`
	PeerRuns   []float64 `json:"peer_runs,omitempty"`
	// Headline rows go into README.md's table (make bench-readme); every
	// row goes into docs/benchmarks.md.
	Headline bool `json:"headline,omitempty"`
	// Decimals overrides the number format (0: automatic).
	Decimals int `json:"decimals,omitempty"`
}

type results struct {
	Mode    string      `json:"mode"`
	Machine machineInfo `json:"machine"`
	Rows    []row       `json:"rows"`
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
	fmt.Fprintf(os.Stderr, "bench: %s: %s: racker %s, %s %s\n", x.Section, x.Figure, x.num(x.Racker), x.PeerIs, x.num(x.Peer))
}

func (x row) num(v float64) string {
	if x.Decimals > 0 {
		return strings.TrimSpace(fmt.Sprintf("%.*f %s", x.Decimals, v, x.Unit))
	}
	return num(v, x.Unit)
}

func num(v float64, unit string) string {
	switch {
	case unit == "":
		return thousands(v)
	case v == 0:
		return "-"
	case v >= 100:
		return thousands(v) + " " + unit
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// thousands prints v rounded, with commas (16,300).
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 && s != "0" {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (x row) ratioText() string {
	if x.Ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x.Ratio)
}

func (r *results) print(w io.Writer) {
	fmt.Fprintln(w, r.Machine.summary())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tRACKER\tPEER\tRATIO\tPEER IS\t")
	section := ""
	for _, x := range r.Rows {
		if x.Section != section {
			section = x.Section
			fmt.Fprintf(tw, "%s\t\t\t\t\t\n", "— "+section)
		}
		fig := x.Figure
		if x.Note != "" {
			fig += " (" + x.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", fig, x.num(x.Racker), x.num(x.Peer), x.ratioText(), x.PeerIs)
	}
	tw.Flush()
	fmt.Fprintln(w, ratioLegend)
}

const ratioLegend = "ratio > 1: Racker ahead of the peer (throughput: racker/peer; latency, time, memory, cost: peer/racker)"

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while writing the results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("while writing the results to %s: %w", path, err)
	}
	return nil
}

func readResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("while reading bench results: %w", err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("while reading bench results %s: %w", path, err)
	}
	if r.Machine.Date == "" || r.Machine.StateFS == "" {
		return nil, fmt.Errorf("bench results %s say nothing of the machine or the state folder's filesystem: not from this bench", path)
	}
	return &r, nil
}
