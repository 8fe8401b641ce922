//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"
)

// phaseTimes records the wall time of each phase (sim up, each spec) to print
// as a table at the end: a figure, not an assertion.
type phaseTimes struct {
	mu    sync.Mutex
	names []string
	times map[string]time.Duration
}

var phases = &phaseTimes{times: map[string]time.Duration{}}

func (p *phaseTimes) add(name string, d time.Duration) {
	if name == "" || d == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.times[name]; !ok {
		p.names = append(p.names, name)
	}
	p.times[name] += d
}

func (p *phaseTimes) print(w io.Writer, total time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPHASE\tWALL TIME")
	for _, n := range p.names {
		fmt.Fprintf(tw, "%s\t%s\n", n, p.times[n].Round(100*time.Millisecond))
	}
	fmt.Fprintf(tw, "whole suite\t%s\n", total.Round(time.Second))
	tw.Flush()
}
