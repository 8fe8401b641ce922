package unitd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// journalTail returns the last n lines of a unit's log.
func (m *Manager) journalTail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(m.Root, m.LogDir, name+".log"))
	if err != nil {
		return ""
	}
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return ""
	}
	lines := bytes.Split(b, []byte("\n"))
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

// Journalctl reads the units' logs in logDir the way `journalctl -u UNIT
// [-n N] [-f]` shows a unit's journal; without -u it shows every unit's.
// -f follows the log until the writer fails or stop is closed.
func Journalctl(logDir string, args []string, stdout, stderr io.Writer, stop <-chan struct{}) int {
	var units []string
	n, follow := 0, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-u" || a == "--unit":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "journalctl: option -u needs a unit")
				return 1
			}
			i++
			units = append(units, UnitName(args[i]))
		case strings.HasPrefix(a, "--unit="):
			units = append(units, UnitName(strings.TrimPrefix(a, "--unit=")))
		case a == "-n" || a == "--lines":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "journalctl: option -n needs a number")
				return 1
			}
			i++
			v, err := strconv.Atoi(args[i])
			if err != nil || v < 0 {
				fmt.Fprintf(stderr, "journalctl: -n %q: want a number\n", args[i])
				return 1
			}
			n = v
		case a == "-f" || a == "--follow":
			follow = true
		case a == "--no-pager" || a == "-b" || a == "--boot" || a == "-l" || a == "--full" || a == "-q":
		default:
			fmt.Fprintf(stderr, "journalctl: option %q is not supported by the simulated node (-u UNIT, -n N, -f)\n", a)
			return 1
		}
	}
	if len(units) == 0 {
		entries, _ := os.ReadDir(logDir)
		for _, e := range entries {
			if name, ok := strings.CutSuffix(e.Name(), ".log"); ok {
				units = append(units, name)
			}
		}
		slices.Sort(units)
	}
	if len(units) > 1 && follow {
		fmt.Fprintln(stderr, "journalctl: -f follows one unit at a time here")
		return 1
	}
	for _, u := range units {
		p := filepath.Join(logDir, u+".log")
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(stderr, "journalctl: %v\n", err)
			return 1
		}
		if _, err := io.WriteString(stdout, lastLines(b, n)); err != nil {
			return 1
		}
		if follow {
			return followFile(p, int64(len(b)), stdout, stop)
		}
	}
	if len(units) == 0 {
		fmt.Fprintln(stdout, "-- No entries --")
	}
	return 0
}

// followFile copies what is appended to p after offset until stop closes
// or stdout fails.
func followFile(p string, offset int64, stdout io.Writer, stop <-chan struct{}) int {
	buf := make([]byte, 32<<10)
	for {
		if f, err := os.Open(p); err == nil {
			if st, err := f.Stat(); err == nil && st.Size() < offset {
				offset = 0 // the log was replaced
			}
			for {
				n, err := f.ReadAt(buf, offset)
				if n > 0 {
					if _, werr := stdout.Write(buf[:n]); werr != nil {
						f.Close()
						return 0
					}
					offset += int64(n)
				}
				if err != nil {
					break
				}
			}
			f.Close()
		}
		select {
		case <-stop:
			return 0
		case <-time.After(200 * time.Millisecond):
		}
	}
}
