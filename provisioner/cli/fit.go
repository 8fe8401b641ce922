package cli

import (
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// What is drawn on a terminal fits it: a line longer than the terminal is
// wide wraps onto the next row, and a view that redraws in place (the live
// view, status --watch) would then move the cursor back over fewer rows
// than it drew, leaving torn copies of the table behind. So every line is
// clipped to the width (the last column, the note, is what gets cut: the
// whole of it is in status -o wide), and a table taller than the terminal
// shows its most interesting rows.

// termSize is the size of the terminal Stdout is; 0, 0 when it is not one
// (output to a file or a pipe is never clipped).
func (e *Env) termSize() (width, height int) {
	if e.TermSize != nil {
		return e.TermSize()
	}
	f, ok := e.Stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, 0
	}
	w, h, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0
	}
	return w, h
}

// fitWidth clips every line of s to fit a terminal width columns wide
// (one column spare: some terminals wrap on the last one); width <= 0
// leaves s alone.
func fitWidth(s string, width int) string {
	if width <= 0 {
		return s
	}
	max := width - 1
	if max < 2 {
		max = 2
	}
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		nl := strings.HasSuffix(l, "\n")
		l = strings.TrimSuffix(l, "\n")
		if utf8.RuneCountInString(l) > max {
			l = clipRunes(strings.TrimRight(l, " "), max)
		}
		if nl {
			l += "\n"
		}
		lines[i] = l
	}
	return strings.Join(lines, "")
}

// clipRunes shortens s to n characters, the last one an ellipsis.
func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
