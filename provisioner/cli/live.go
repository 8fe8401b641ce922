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
// second, so the time in phase keeps counting. Each frame fits the
// terminal (fit.go): lines are clipped to its width and rows to its
// height, so moving the cursor up by the lines drawn always lands on the
// frame's first row. A question to the user pauses it.
type liveView struct {
	w      io.Writer
	size   func() (width, height int)
	mu     sync.Mutex
	nodes  []orchestrator.Node
	lines  int // lines drawn last time, to move the cursor back over
	paused bool
	done   chan struct{}
	once   sync.Once
}

// newLiveView starts a view writing to w (a terminal of the given size);
// Close stops it.
func newLiveView(w io.Writer, size func() (width, height int)) *liveView {
	v := &liveView{w: w, size: size, done: make(chan struct{})}
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
	frame := progressFrame(v.nodes, time.Now(), v.size)
	if v.lines > 0 {
		// Up to the frame's first row, then clear to the end of the screen.
		fmt.Fprintf(v.w, "\r\x1b[%dA\x1b[J", v.lines)
	}
	io.WriteString(v.w, frame)
	v.lines = strings.Count(frame, "\n")
}

// progressFrame is the progress table fitted to a terminal of size (the
// header, the summary and a spare row stay; the rest are node rows).
func progressFrame(nodes []orchestrator.Node, now time.Time, size func() (int, int)) string {
	width, height := 0, 0
	if size != nil {
		width, height = size()
	}
	rows := 0
	if height > 0 {
		rows = max(height-4, 1)
	}
	var b strings.Builder
	writeProgress(&b, nodes, now, rows)
	return fitWidth(b.String(), width)
}

// printAbove shows a line of another program's progress above the table
// (lokoctl's, while bootstrap runs it): the frame is erased, the line
// printed where it stood, and the frame drawn again below it, so the lines
// scroll and the table stays at the bottom.
func (v *liveView) printAbove(line string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lines > 0 && !v.paused {
		fmt.Fprintf(v.w, "\r\x1b[%dA\x1b[J", v.lines)
	}
	width := 0
	if v.size != nil {
		width, _ = v.size()
	}
	io.WriteString(v.w, fitWidth(line+"\n", width))
	v.lines = 0
	if v.paused || v.nodes == nil {
		return
	}
	frame := progressFrame(v.nodes, time.Now(), v.size)
	io.WriteString(v.w, frame)
	v.lines = strings.Count(frame, "\n")
}

// linesAbove is a writer of whole lines (lokoctl's progress) that shows
// them above the live view while there is one, and on w otherwise.
type linesAbove struct {
	w    io.Writer
	mu   sync.Mutex
	view *liveView
}

// attach routes the lines to view (nil: back to w).
func (l *linesAbove) attach(view *liveView) {
	l.mu.Lock()
	l.view = view
	l.mu.Unlock()
}

// Write takes one or more whole lines, as cluster's progress lines are
// written.
func (l *linesAbove) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.view == nil {
		return l.w.Write(b)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		l.view.printAbove(line)
	}
	return len(b), nil
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
