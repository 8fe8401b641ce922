package release

import (
	"fmt"
	"io"
	"time"
)

// progress prints a one-line download meter on a terminal; a nil *progress
// (not a terminal) prints nothing.
type progress struct {
	w          io.Writer
	total, got int64
	last       time.Time
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		return nil
	}
	return &progress{w: w}
}

func (p *progress) start(total int64) {
	if p != nil {
		p.total, p.got = total, 0
	}
}

func (p *progress) Write(b []byte) (int, error) {
	p.add(int64(len(b)))
	return len(b), nil
}

func (p *progress) add(n int64) {
	if p == nil {
		return
	}
	p.got += n
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond {
		p.last = now
		p.print()
	}
}

func (p *progress) print() {
	fmt.Fprintf(p.w, "\rdownloading %.1f / %.1f MiB", float64(p.got)/(1<<20), float64(p.total)/(1<<20))
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.print()
	fmt.Fprintln(p.w)
}
