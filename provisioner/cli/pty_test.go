package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal of cols×rows: racker writes to the
// terminal side (tty) as it would to a real one, the test reads what a
// terminal would show from the other side (ptmx).
func openPTY(t *testing.T, cols, rows int) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close(); ptmx.Close() })
	return ptmx, tty
}

// screen is the little of a VT100 racker's views use, enough to see what a
// terminal shows: printable characters with automatic wrap at the right
// margin, CR, LF (scrolling at the bottom), cursor up (CSI n A), erase to
// the end of the screen (CSI J), home (CSI H) and erase all (CSI 2 J).
// It is a test's model of a terminal, not a terminal.
type screen struct {
	cols, rows int
	cells      [][]rune
	r, c       int
	wrapNext   bool
	maxCol     int // the widest row ever written, to catch lines that wrapped
	wrapped    int // how many times text ran past the right margin
}

func newScreen(cols, rows int) *screen {
	s := &screen{cols: cols, rows: rows}
	for range rows {
		s.cells = append(s.cells, s.blank())
	}
	return s
}

func (s *screen) blank() []rune { return []rune(strings.Repeat(" ", s.cols)) }

func (s *screen) lineFeed() {
	if s.r == s.rows-1 {
		s.cells = append(s.cells[1:], s.blank())
		return
	}
	s.r++
}

func (s *screen) write(b []byte) {
	text := []rune(string(b))
	for i := 0; i < len(text); i++ {
		ch := text[i]
		switch {
		case ch == '\x1b' && i+1 < len(text) && text[i+1] == '[':
			j := i + 2
			for j < len(text) && (text[j] >= '0' && text[j] <= '9' || text[j] == ';') {
				j++
			}
			if j == len(text) {
				return
			}
			n := 0
			fmt.Sscanf(string(text[i+2:j]), "%d", &n)
			switch text[j] {
			case 'A':
				s.r = max(s.r-max(n, 1), 0)
			case 'J':
				if n == 2 {
					for r := range s.cells {
						s.cells[r] = s.blank()
					}
				} else {
					copy(s.cells[s.r][s.c:], s.blank()[s.c:])
					for r := s.r + 1; r < s.rows; r++ {
						s.cells[r] = s.blank()
					}
				}
			case 'H':
				s.r, s.c = 0, 0
			}
			s.wrapNext = false
			i = j
		case ch == '\r':
			s.c, s.wrapNext = 0, false
		case ch == '\n':
			s.lineFeed()
			s.wrapNext = false
		case ch >= ' ':
			if s.wrapNext {
				s.wrapped++
				s.c, s.wrapNext = 0, false
				s.lineFeed()
			}
			s.cells[s.r][s.c] = ch
			s.maxCol = max(s.maxCol, s.c+1)
			if s.c == s.cols-1 {
				s.wrapNext = true
			} else {
				s.c++
			}
		}
	}
}

func (s *screen) String() string {
	var b strings.Builder
	for _, row := range s.cells {
		b.WriteString(strings.TrimRight(string(row), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// A bootstrap on a terminal of 80 columns, with hostnames and failure
// reasons that make the progress table wider than that: every frame of
// the live view fits, so the screen shows the last frame and the summary,
// with no torn copies of earlier frames above them.
func TestLiveViewFits80Columns(t *testing.T) {
	flags, url := bootRig(t)
	ptmx, tty := openPTY(t, 80, 24)
	scr := newScreen(80, 24)
	var mu sync.Mutex
	var raw strings.Builder
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			scr.write(buf[:n])
			raw.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	env := &Env{Stdin: tty, Stdout: tty, Stderr: io.Discard}
	code := env.Run(t.Context(), append([]string{"bootstrap", "--boot-services", url, "--bmc-driver", "fake", "--os", "testos",
		"--bmc-timeout", "3s", "--on-failure", "exclude", "--provision", "flatcar", "--cluster-name", "a-cluster-with-a-long-name-to-overflow-eighty-columns"}, flags...))
	if code != 1 {
		t.Fatalf("bootstrap with a dead BMC: exit %d, want 1", code)
	}
	time.Sleep(100 * time.Millisecond) // the last bytes through the terminal
	tty.Close()
	ptmx.Close()
	<-read
	mu.Lock()
	defer mu.Unlock()
	shown := scr.String()
	if scr.wrapped > 0 || scr.maxCol >= 80 {
		t.Errorf("%d line(s) ran past the right margin (widest %d columns); the screen:\n%s", scr.wrapped, scr.maxCol, shown)
	}
	if !strings.Contains(raw.String(), "\x1b[") {
		t.Fatalf("no live view drawn on the terminal:\n%q", raw.String())
	}
	// The last live frame stays, then the summary: two tables, no more.
	if h := strings.Count(shown, "HOSTNAME"); h != 2 {
		t.Errorf("the screen shows %d table headers, want 2 (the last frame and the summary):\n%s", h, shown)
	}
	if s := strings.Count(shown, "3 node(s):"); s != 2 {
		t.Errorf("the screen shows %d summary lines, want 2:\n%s", s, shown)
	}
	if !strings.Contains(shown, "a-cluster-with-a-long-name") || !strings.Contains(shown, "…") {
		t.Errorf("the long rows are not there, clipped:\n%s", shown)
	}
}
