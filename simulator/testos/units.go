package testos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UnitSpec is what the test OS takes from a unit file: the commands of a
// Type=oneshot service, in systemd's order, and the unit to start on failure.
type UnitSpec struct {
	Name      string
	Pre       []string // ExecStartPre lines
	Start     []string // ExecStart lines
	Post      []string // ExecStartPost lines
	OnFailure []string
	// WantedBy are the [Install] targets (WantedBy= and RequiredBy=) that
	// enabling the unit links it into; none means it cannot be enabled.
	WantedBy []string
	// RestartOnFailure and RestartSec: Restart=on-failure, which Racker's
	// booted unit uses so a callback lost while Racker is away is retried.
	RestartOnFailure bool
	RestartSec       time.Duration
}

// ParseUnit reads the [Unit] and [Service] keys the test OS acts on; drop-in
// contents are parsed after the unit, as systemd does, so they can reset a
// list with an empty assignment ("ExecStart=").
func ParseUnit(name string, contents ...string) UnitSpec {
	spec := UnitSpec{Name: name, RestartSec: 100 * time.Millisecond}
	for _, text := range contents {
		iniEntries(text, func(section, key, value string) error {
			var list *[]string
			switch section + "." + key {
			case "Service.ExecStartPre":
				list = &spec.Pre
			case "Service.ExecStart":
				list = &spec.Start
			case "Service.ExecStartPost":
				list = &spec.Post
			case "Service.Restart":
				spec.RestartOnFailure = value == "on-failure"
				return nil
			case "Service.RestartSec":
				if d, err := parseTimespan(value); err == nil {
					spec.RestartSec = d
				}
				return nil
			case "Install.WantedBy", "Install.RequiredBy":
				spec.WantedBy = append(spec.WantedBy, strings.Fields(value)...)
				return nil
			case "Unit.OnFailure":
				if value == "" {
					spec.OnFailure = nil
				} else {
					spec.OnFailure = append(spec.OnFailure, strings.Fields(value)...)
				}
				return nil
			default:
				return nil
			}
			if value == "" {
				*list = nil
			} else {
				*list = append(*list, value)
			}
			return nil
		})
	}
	return spec
}

// parseTimespan reads systemd time spans the test OS meets: "5" (seconds),
// "5s", "100ms", "1min", "2min 30s".
func parseTimespan(v string) (time.Duration, error) {
	var total time.Duration
	for _, f := range strings.Fields(v) {
		num := strings.TrimRightFunc(f, func(r rune) bool { return r < '0' || r > '9' })
		unit := f[len(num):]
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad time span %q", v)
		}
		mult, ok := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "ms": time.Millisecond,
			"m": time.Minute, "min": time.Minute, "h": time.Hour}[unit]
		if !ok {
			return 0, fmt.Errorf("bad time span %q", v)
		}
		total += time.Duration(n * float64(mult))
	}
	return total, nil
}

// iniEntries calls fn with each key=value of a systemd-style file (units,
// .network files) and its [section], in order; fn's first error stops it.
func iniEntries(text string, fn func(section, key, value string) error) error {
	section := ""
	for _, line := range joinContinuations(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if err := fn(section, strings.TrimSpace(key), strings.TrimSpace(value)); err != nil {
			return err
		}
	}
	return nil
}

func joinContinuations(text string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// Command is one parsed Exec line.
type Command struct {
	Argv         []string
	IgnoreFailed bool // the "-" prefix
}

// SplitCommand splits an Exec line by systemd's rules: whitespace-separated
// words, "double" and 'single' quoted words, C-style backslash escapes,
// "%%" for a literal percent, and the "-@:+!" prefixes on the first word.
func SplitCommand(line string) (Command, error) {
	var cmd Command
	s := strings.TrimSpace(line)
	for len(s) > 0 && strings.ContainsRune("-@:+!", rune(s[0])) {
		if s[0] == '-' {
			cmd.IgnoreFailed = true
		}
		s = s[1:]
	}
	var word strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\'') && !inWord:
			quote, inWord = c, true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				cmd.Argv = append(cmd.Argv, word.String())
				word.Reset()
				inWord = false
			}
		case c == '\\' && i+1 < len(s):
			i++
			word.WriteByte(unescape(s[i]))
			inWord = true
		case c == '%' && i+1 < len(s) && s[i+1] == '%':
			i++
			word.WriteByte('%')
			inWord = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return cmd, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		cmd.Argv = append(cmd.Argv, word.String())
	}
	if len(cmd.Argv) == 0 {
		return cmd, fmt.Errorf("empty command line")
	}
	return cmd, nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	}
	return c
}

// Runner runs one command with the test OS's environment.
type Runner func(ctx context.Context, argv []string) error

// ExecRunner runs commands as child processes with output on the console
// (the caller's stdout/stderr), as systemd's journal would show it there.
func ExecRunner(stdout, stderr *os.File) Runner {
	return func(ctx context.Context, argv []string) error {
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Stdout, c.Stderr = stdout, stderr
		c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=vt100"}
		return c.Run()
	}
}

// RunUnits runs the named units (installed under root's
// /etc/systemd/system, see EnabledUnits) in order and, when one fails, the
// units its OnFailure= names. A failed unit does not stop the others
// (systemd would start them too). A failed unit with Restart=on-failure is
// started again every RestartSec in the background until it succeeds or ctx
// ends, as systemd does (its default start limit never trips at RestartSec
// of a second or more); OnFailure= is not run for it, since systemd never
// marks it failed. It returns the failed units and a wait for the restarts.
func RunUnits(ctx context.Context, root string, names []string, run Runner, say func(string)) (failed []string, wait func()) {
	var restarts sync.WaitGroup
	for _, name := range names {
		spec := specOf(root, name)
		if err := runSpec(ctx, spec, run, say); err != nil {
			if spec.RestartOnFailure {
				say(fmt.Sprintf("unit %s failed, restarting it every %s: %v", name, spec.RestartSec, err))
				restarts.Add(1)
				go func() {
					defer restarts.Done()
					restartUntilDone(ctx, spec, run, say)
				}()
				continue
			}
			say(fmt.Sprintf("unit %s failed: %v", name, err))
			failed = append(failed, name)
			for _, on := range spec.OnFailure {
				say(fmt.Sprintf("starting %s (OnFailure of %s)", on, name))
				if err := runSpec(ctx, specOf(root, on), run, say); err != nil {
					say(fmt.Sprintf("unit %s failed: %v", on, err))
				}
			}
			continue
		}
		say(fmt.Sprintf("unit %s finished", name))
	}
	return failed, restarts.Wait
}

func restartUntilDone(ctx context.Context, spec UnitSpec, run Runner, say func(string)) {
	for attempt := 2; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(spec.RestartSec):
		}
		err := runSpec(ctx, spec, run, say)
		if err == nil {
			say(fmt.Sprintf("unit %s finished (start %d)", spec.Name, attempt))
			return
		}
		say(fmt.Sprintf("unit %s failed again (start %d): %v", spec.Name, attempt, err))
	}
}

// specOf parses a unit from its file under root and its drop-ins
// (NAME.d/*.conf, in name order), as systemd reads them. A unit without a
// file parses to no commands, and fails when started.
func specOf(root, name string) UnitSpec {
	var texts []string
	dir := filepath.Join(root, unitDir)
	if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
		texts = append(texts, string(b))
	}
	dropins, _ := filepath.Glob(filepath.Join(dir, name+".d", "*.conf"))
	sort.Strings(dropins)
	for _, d := range dropins {
		if b, err := os.ReadFile(d); err == nil {
			texts = append(texts, string(b))
		}
	}
	return ParseUnit(name, texts...)
}

func runSpec(ctx context.Context, spec UnitSpec, run Runner, say func(string)) error {
	if len(spec.Pre)+len(spec.Start)+len(spec.Post) == 0 {
		return fmt.Errorf("unit %s has no commands the test OS can run", spec.Name)
	}
	say(fmt.Sprintf("starting unit %s", spec.Name))
	for _, group := range [][]string{spec.Pre, spec.Start, spec.Post} {
		for _, line := range group {
			cmd, err := SplitCommand(line)
			if err != nil {
				return fmt.Errorf("while parsing %q: %w", line, err)
			}
			say(fmt.Sprintf("%s: running %s", spec.Name, strings.Join(cmd.Argv, " ")))
			if err := run(ctx, cmd.Argv); err != nil && !cmd.IgnoreFailed {
				return fmt.Errorf("%s: %w", cmd.Argv[0], err)
			}
		}
	}
	return nil
}
