package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/orchestrator"
)

// lokoctl's lines scroll above the live table: each erases the frame,
// takes its place, and the frame is drawn again below it; with no view the
// lines go straight through.
func TestLinesAboveTheLiveView(t *testing.T) {
	var out bytes.Buffer
	above := &linesAbove{w: &out}
	above.Write([]byte("lokoctl | before the view\n"))
	if out.String() != "lokoctl | before the view\n" {
		t.Fatalf("without a view: %q", out.String())
	}
	out.Reset()

	view := newLiveView(&out, func() (int, int) { return 80, 24 })
	defer view.Close()
	view.Update([]orchestrator.Node{{Hostname: "n1", PrimaryMAC: "00:11:22:33:44:10", Phase: orchestrator.Netbooting, PhaseSince: time.Now()}})
	above.attach(view)
	above.Write([]byte("lokoctl | one\nlokoctl | two\n"))
	above.attach(nil)
	above.Write([]byte("lokoctl | after\n"))
	view.Close()

	s := out.String()
	first, one, two := strings.Index(s, "n1"), strings.Index(s, "lokoctl | one"), strings.Index(s, "lokoctl | two")
	if first < 0 || one < first || two < one {
		t.Fatalf("want the frame, then the lines in order:\n%q", s)
	}
	// Before each line the frame is erased (cursor up over it, clear).
	if !strings.Contains(s[first:one], "\x1b[J") || !strings.Contains(s[one:two], "\x1b[J") {
		t.Errorf("a line was printed without erasing the frame first:\n%q", s)
	}
	// After each line the frame is drawn again.
	if !strings.Contains(s[one:two], "n1") || !strings.Contains(s[two:], "n1") {
		t.Errorf("the frame was not drawn again below a line:\n%q", s)
	}
	if i := strings.Index(s, "lokoctl | after\n"); i < two || strings.Contains(s[i-len("\x1b[J"):i], "\x1b[J") {
		t.Errorf("detached, a line did not go straight through:\n%q", s)
	}
}
