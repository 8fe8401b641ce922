package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// The simulated nodes' image downloads: each fetches the whole image from
// racker serve, and the run adds them up into the image-serving rate.

// download fetches the whole OS image, as flatcar-install does, and
// checks its length and last bytes.
func (n *simNode) download(c *http.Client) error {
	n.sim.requests.Add(1)
	req, err := http.NewRequestWithContext(n.sim.ctx, http.MethodGet, n.sim.base+n.sim.image, nil)
	if err != nil {
		return err
	}
	n.sim.dl.begin()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		n.sim.dl.end(start, 0)
		return fmt.Errorf("GET %s from %s: %w", n.sim.image, n.ip, err)
	}
	defer resp.Body.Close()
	tail := &tailWriter{keep: len(n.sim.tail)}
	got, err := io.Copy(tail, resp.Body)
	n.sim.dl.end(start, got)
	switch {
	case err != nil:
		return fmt.Errorf("GET %s from %s: %w after %d bytes", n.sim.image, n.ip, err, got)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s from %s: %s", n.sim.image, n.ip, resp.Status)
	case got != n.sim.set.imageBytes() || !bytes.Equal(tail.last, n.sim.tail):
		return fmt.Errorf("GET %s from %s: %d bytes, want %d ending as the image does", n.sim.image, n.ip, got, n.sim.set.imageBytes())
	}
	return nil
}

// tailWriter discards what it is given but its last keep bytes.
type tailWriter struct {
	keep int
	last []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.last = append(w.last, p[max(0, len(p)-w.keep):]...)
	if len(w.last) > w.keep {
		w.last = w.last[len(w.last)-w.keep:]
	}
	return len(p), nil
}

// downloads is what the run's image downloads add up to: the image-serving
// rate is the bytes over the time any download ran.
type downloads struct {
	mu        sync.Mutex
	active    int
	busySince time.Time
	dlSummary
}

// dlSummary is what the downloads of a run added up to.
type dlSummary struct {
	bytes int64
	count int
	max   int           // downloads at once, at most
	busy  time.Duration // time with at least one download running
	sum   time.Duration // of each download's own time
}

func (d *downloads) summary() dlSummary {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dlSummary
}

func (d *downloads) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active == 0 {
		d.busySince = time.Now()
	}
	d.active++
	d.max = max(d.max, d.active)
}

func (d *downloads) end(start time.Time, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active--
	if d.active == 0 {
		d.busy += time.Since(d.busySince)
	}
	d.bytes += n
	d.count++
	d.sum += time.Since(start)
}
