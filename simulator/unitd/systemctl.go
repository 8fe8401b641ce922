package unitd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Exit codes of systemctl (LSB, as systemctl documents them).
const (
	exitOK          = 0
	exitFailure     = 1
	exitNotRunning  = 3
	exitNoSuchUnit  = 4
	exitNotLoaded   = 5
	usageError      = 1
	changedOnDiskFm = "Warning: The unit file, source configuration file or drop-ins of %s changed on disk. Run 'systemctl daemon-reload' to reload units.\n"
)

// ctlArgs is a parsed systemctl command line.
type ctlArgs struct {
	verb  string
	units []string
	quiet bool
	now   bool
	value bool
	props []string
}

func parseCtlArgs(args []string) (ctlArgs, error) {
	var a ctlArgs
	for i := 0; i < len(args); i++ {
		s := args[i]
		switch {
		case s == "-q" || s == "--quiet":
			a.quiet = true
		case s == "--now":
			a.now = true
		case s == "--value":
			a.value = true
		case s == "-p" || s == "--property":
			if i+1 >= len(args) {
				return a, fmt.Errorf("option %s needs a value", s)
			}
			i++
			a.props = append(a.props, strings.Split(args[i], ",")...)
		case strings.HasPrefix(s, "--property="):
			a.props = append(a.props, strings.Split(strings.TrimPrefix(s, "--property="), ",")...)
		case s == "--no-block" || s == "--no-pager" || s == "--system" || s == "-l" || s == "--full" || s == "--no-legend" || s == "--no-ask-password":
		case strings.HasPrefix(s, "-"):
			return a, fmt.Errorf("unrecognized option '%s'", s)
		case a.verb == "":
			a.verb = s
		default:
			a.units = append(a.units, UnitName(s))
		}
	}
	if a.verb == "" {
		return a, fmt.Errorf("no command given (start, stop, restart, reload, enable, disable, is-active, is-enabled, status, show, daemon-reload, …)")
	}
	return a, nil
}

// Systemctl runs one systemctl command line against the manager and
// returns its exit code, with systemctl's messages and exit codes.
func (m *Manager) Systemctl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a, err := parseCtlArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, "systemctl:", err)
		return usageError
	}
	needUnits := map[string]bool{"start": true, "stop": true, "restart": true, "try-restart": true, "reload": true,
		"reload-or-restart": true, "enable": true, "disable": true, "is-active": true, "is-enabled": true, "is-failed": true, "cat": true}
	if needUnits[a.verb] && len(a.units) == 0 {
		fmt.Fprintf(stderr, "Too few arguments: systemctl %s needs a unit.\n", a.verb)
		return usageError
	}
	code := exitOK
	worst := func(c int) {
		if c > code {
			code = c
		}
	}
	switch a.verb {
	case "daemon-reload":
		m.DaemonReload()
	case "start", "stop", "restart", "try-restart", "reload", "reload-or-restart":
		for _, u := range a.units {
			worst(m.job(ctx, a.verb, u, stderr))
		}
	case "enable", "disable":
		for _, u := range a.units {
			c := m.enableCmd(a.verb == "enable", u, stdout, stderr)
			if c == exitOK && a.now {
				verb := "start"
				if a.verb == "disable" {
					verb = "stop"
				}
				c = m.job(ctx, verb, u, stderr)
			}
			worst(c)
		}
	case "is-active", "is-failed":
		code = exitNotRunning
		if a.verb == "is-failed" {
			code = exitFailure
		}
		for _, u := range a.units {
			st := m.ActiveState(u)
			if !a.quiet {
				fmt.Fprintln(stdout, st)
			}
			// systemctl is-active counts a reloading service as active.
			if (a.verb == "is-active" && (st == "active" || st == "reloading")) || (a.verb == "is-failed" && st == "failed") {
				code = exitOK
			}
		}
	case "is-enabled":
		code = exitFailure
		for _, u := range a.units {
			st, err := m.EnabledState(u)
			if err != nil {
				fmt.Fprintf(stderr, "Failed to get unit file state for %s: No such file or directory\n", u)
				continue
			}
			if !a.quiet {
				fmt.Fprintln(stdout, st)
			}
			if st == "enabled" || st == "static" {
				code = exitOK
			}
		}
	case "status":
		code = m.status(a.units, stdout, stderr)
	case "show":
		code = m.show(a, stdout, stderr)
	case "cat":
		for _, name := range a.units {
			u, err := LoadUnit(m.Root, name, m.Dirs)
			if err != nil {
				fmt.Fprintf(stderr, "No files found for %s.\n", name)
				worst(exitFailure)
				continue
			}
			for _, p := range append([]string{u.Path}, u.DropIns...) {
				b, _ := os.ReadFile(filepath.Join(m.Root, p))
				fmt.Fprintf(stdout, "# %s\n%s\n", p, b)
			}
		}
	case "reset-failed":
		m.mu.Lock()
		for n, s := range m.svcs {
			if s.state == "failed" && (len(a.units) == 0 || slices.Contains(a.units, n)) {
				s.state, s.sub, s.starts = "inactive", "dead", nil
			}
		}
		m.mu.Unlock()
	case "list-units":
		m.mu.Lock()
		names := make([]string, 0, len(m.svcs))
		for n := range m.svcs {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			s := m.svcs[n]
			fmt.Fprintf(stdout, "%-40s %-10s %-12s %s\n", n, s.state, s.sub, m.descriptionLocked(n))
		}
		m.mu.Unlock()
	case "is-system-running":
		if !a.quiet {
			fmt.Fprintln(stdout, "running")
		}
	case "reboot", "poweroff", "halt":
		fmt.Fprintf(stderr, "systemctl %s: the simulated management node is switched off and on from the host (racker-sim down / up)\n", a.verb)
		code = exitFailure
	default:
		fmt.Fprintf(stderr, "Unknown command verb '%s'.\n", a.verb)
		code = usageError
	}
	return code
}

// job runs start/stop/restart/reload for one unit and prints systemctl's
// failure messages.
func (m *Manager) job(ctx context.Context, verb, name string, stderr io.Writer) int {
	if u := m.loaded(name); u != nil && u.ChangedOnDisk(m.Root, m.Dirs) {
		fmt.Fprintf(stderr, changedOnDiskFm, name)
	}
	var err error
	switch verb {
	case "start":
		err = m.Start(ctx, name)
	case "stop":
		if _, lerr := m.unitDef(name); lerr != nil && m.ActiveState(name) == "inactive" {
			fmt.Fprintf(stderr, "Failed to stop %s: Unit %s not loaded.\n", name, name)
			return exitNotLoaded
		}
		err = m.Stop(ctx, name)
	case "restart":
		err = m.Restart(ctx, name)
	case "try-restart":
		if m.ActiveState(name) == "active" {
			err = m.Restart(ctx, name)
		}
	case "reload":
		err = m.Reload(ctx, name)
	case "reload-or-restart":
		if m.ActiveState(name) == "active" {
			if u, uerr := m.unitDef(name); uerr == nil && len(u.ExecReload) > 0 {
				err = m.Reload(ctx, name)
				break
			}
		}
		err = m.Restart(ctx, name)
	}
	switch {
	case err == nil:
		return exitOK
	case errNotFound(err):
		fmt.Fprintf(stderr, "Failed to %s %s: Unit %s not found.\n", verb, name, name)
		return exitNotLoaded
	default:
		fmt.Fprintf(stderr, "Failed to %s %s: %v\nSee \"systemctl status %s\" and \"journalctl -u %s\" for details.\n", verb, name, err, name, name)
		return exitFailure
	}
}

// loaded returns the cached definition of a unit, nil when not loaded.
func (m *Manager) loaded(name string) *Unit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.units[name]
}

func (m *Manager) descriptionLocked(name string) string {
	if u, ok := m.units[name]; ok {
		return describeUnit(u)
	}
	return ""
}

// status prints systemctl status for units; exit 3 when one is not active,
// 4 when one does not exist.
func (m *Manager) status(names []string, stdout, stderr io.Writer) int {
	if len(names) == 0 {
		m.mu.Lock()
		for n := range m.svcs {
			names = append(names, n)
		}
		m.mu.Unlock()
		slices.Sort(names)
	}
	code := exitOK
	for i, name := range names {
		u, err := m.unitDef(name)
		if err != nil {
			fmt.Fprintf(stderr, "Unit %s could not be found.\n", name)
			code = max(code, exitNoSuchUnit)
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		enabled, _ := m.EnabledState(name)
		m.mu.Lock()
		s := m.svcs[name]
		state, sub, pid, since, lastExit, lastPID, result := "inactive", "dead", 0, time.Time{}, "", 0, ""
		if s != nil {
			state, sub, pid, since, lastExit, lastPID, result = s.state, s.sub, s.mainPID, s.since, s.lastExit, s.lastPID, s.result
		}
		m.mu.Unlock()
		dot := "○"
		if state == "active" {
			dot = "●"
		} else if state == "failed" {
			dot = "×"
		}
		fmt.Fprintf(stdout, "%s %s - %s\n", dot, name, describeUnit(u))
		fmt.Fprintf(stdout, "     Loaded: loaded (%s; %s)\n", u.Path, enabled)
		if len(u.DropIns) > 0 {
			fmt.Fprintf(stdout, "    Drop-In: %s\n", strings.Join(u.DropIns, "\n             "))
		}
		line := fmt.Sprintf("     Active: %s (%s)", state, sub)
		if result != "" && result != "success" && state != "active" {
			line += " (Result: " + result + ")"
		}
		if !since.IsZero() {
			line += " since " + since.UTC().Format("Mon 2006-01-02 15:04:05 MST") + "; " + time.Since(since).Round(time.Second).String() + " ago"
		}
		fmt.Fprintln(stdout, line)
		if s != nil {
			m.mu.Lock()
			status := s.status
			m.mu.Unlock()
			if status != "" && pid > 0 {
				fmt.Fprintf(stdout, "     Status: %q\n", status)
			}
		}
		switch {
		case pid > 0:
			fmt.Fprintf(stdout, "   Main PID: %d (%s)\n", pid, commName(pid))
		case lastPID != 0:
			fmt.Fprintf(stdout, "    Process: %d ExecStart (%s)\n", lastPID, lastExit)
		}
		if len(u.Ignored) > 0 {
			fmt.Fprintf(stdout, "       Note: not enforced by the simulated node: %s\n", strings.Join(u.Ignored, ", "))
		}
		if tail := m.journalTail(name, 10); tail != "" {
			fmt.Fprintf(stdout, "\n%s", tail)
		}
		if state != "active" {
			code = max(code, exitNotRunning)
		}
	}
	return code
}

// show prints properties as NAME=VALUE (or the values alone with --value).
func (m *Manager) show(a ctlArgs, stdout, stderr io.Writer) int {
	if len(a.units) == 0 {
		fmt.Fprintln(stderr, "systemctl show: name a unit")
		return usageError
	}
	for i, name := range a.units {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		props := m.properties(name)
		keys := a.props
		if len(keys) == 0 {
			for k := range props {
				keys = append(keys, k)
			}
			slices.Sort(keys)
		}
		for _, k := range keys {
			v, ok := props[k]
			if !ok && len(a.props) > 0 {
				v = "" // systemd prints unknown properties empty
			}
			if a.value {
				fmt.Fprintln(stdout, v)
			} else {
				fmt.Fprintf(stdout, "%s=%s\n", k, v)
			}
		}
	}
	return exitOK
}

func (m *Manager) properties(name string) map[string]string {
	p := map[string]string{"Id": name, "LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead",
		"MainPID": "0", "NRestarts": "0", "Result": "success", "UnitFileState": ""}
	if u, err := m.unitDef(name); err == nil {
		p["LoadState"], p["FragmentPath"], p["Description"] = "loaded", u.Path, describeUnit(u)
		p["DropInPaths"] = strings.Join(u.DropIns, " ")
		p["Restart"], p["Type"] = u.Restart, u.Type
	}
	if st, err := m.EnabledState(name); err == nil {
		p["UnitFileState"] = st
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.svcs[name]; ok {
		p["ActiveState"], p["SubState"], p["MainPID"] = s.state, s.sub, strconv.Itoa(max(s.mainPID, 0))
		p["NRestarts"], p["Result"] = strconv.Itoa(s.restarts), s.result
		if !s.since.IsZero() {
			p["StateChangeTimestamp"] = s.since.UTC().Format("Mon 2006-01-02 15:04:05 MST")
		}
	}
	return p
}

// commName is a process's command name from /proc.
func commName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
