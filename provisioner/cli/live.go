package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/orchestrator"
)

// liveView redraws the progress table in place on a terminal: on every
// change (Update, wired to the orchestrator's Config.OnChange) and every
// second, so the time in phase keeps counting. A question to the user
// pauses it.
type liveView struct {
	w      io.Writer
	mu     sync.Mutex
	nodes  []orchestrator.Node
	lines  int // lines drawn last time, to move the cursor back over
	paused bool
	done   chan struct{}
	once   sync.Once
}

// newLiveView starts a view writing to w (a terminal); Close stops it.
func newLiveView(w io.Writer) *liveView {
	v := &liveView{w: w, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				v.draw()
			case <-v.done:
				return
			}
		}
	}()
	return v
}

// Update shows a new snapshot.
func (v *liveView) Update(ns []orchestrator.Node) {
	v.mu.Lock()
	v.nodes = ns
	v.mu.Unlock()
	v.draw()
}

func (v *liveView) draw() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused || v.nodes == nil {
		return
	}
	var b strings.Builder
	writeProgress(&b, v.nodes, time.Now())
	if v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
	}
	io.WriteString(v.w, b.String())
	v.lines = strings.Count(b.String(), "\n")
}

// Pause stops redrawing (while the user answers a question); the next
// draw after Resume starts below what was printed meanwhile.
func (v *liveView) Pause() {
	v.mu.Lock()
	v.paused, v.lines = true, 0
	v.mu.Unlock()
}

// Resume redraws again.
func (v *liveView) Resume() {
	v.mu.Lock()
	v.paused = false
	v.mu.Unlock()
}

// Close stops the redraws.
func (v *liveView) Close() { v.once.Do(func() { close(v.done) }) }
