package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
)

// LokoctlPrefix starts every line of lokoctl's output that bootstrap
// shows: lokoctl and the Terraform it runs talk for minutes, and each of
// their lines is a progress line of the run.
const LokoctlPrefix = "lokoctl | "

// tailLines is how much of lokoctl's output a failure repeats: Terraform
// prints its error last.
const tailLines = 8

// runLokoctl runs lokoctl in dir with its standard output and error
// streamed to out line by line (each prefixed with LokoctlPrefix, as it
// comes), and on failure returns an error that names the step and
// repeats the last lines.
func runLokoctl(ctx context.Context, out io.Writer, dir, bin string, args ...string) error {
	pl := &progressLines{w: out, prefix: LokoctlPrefix}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, pl, pl
	err := cmd.Run()
	pl.Flush()
	if err != nil {
		if tail := pl.Tail(); tail != "" {
			return fmt.Errorf("%w; its last lines:\n%s", err, tail)
		}
		return err
	}
	return nil
}

// progressLines writes what a program prints to w one whole line at a
// time, prefixed, and keeps the last tailLines lines. Stdout and stderr
// share it, so it locks.
type progressLines struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	part   []byte
	tail   []string
}

func (p *progressLines) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := bytes.IndexByte(p.part, '\n')
		if i < 0 {
			break
		}
		p.line(string(p.part[:i]))
		p.part = p.part[i+1:]
	}
	if len(p.part) > 64<<10 { // a "line" that never ends: show it anyway
		p.line(string(p.part))
		p.part = nil
	}
	return len(b), nil
}

// Flush shows a last line that had no newline.
func (p *progressLines) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.part) > 0 {
		p.line(string(p.part))
		p.part = nil
	}
}

func (p *progressLines) line(s string) {
	s = strings.TrimRight(s, "\r")
	fmt.Fprintln(p.w, p.prefix+s)
	if strings.TrimSpace(s) == "" {
		return
	}
	p.tail = append(p.tail, s)
	if len(p.tail) > tailLines {
		p.tail = p.tail[len(p.tail)-tailLines:]
	}
}

// Tail is the last lines, indented.
func (p *progressLines) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return ""
	}
	return "  " + strings.Join(p.tail, "\n  ")
}
