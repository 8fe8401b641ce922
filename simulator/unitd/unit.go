package unitd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	sdunit "github.com/coreos/go-systemd/v22/unit"
)

// UnitDirs are the folders system units are read from, highest priority
// first, as systemd reads them: the administrator's, runtime units, the OS's.
var UnitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system"}

// Unit is a service unit as the manager runs it: the fragment with its
// drop-ins applied (NAME.service.d/*.conf, in file-name order, a later
// assignment overriding an earlier one and an empty one resetting a list).
type Unit struct {
	Name        string
	Path        string   // the fragment file
	DropIns     []string // the drop-in files applied, in order
	Description string

	Type          string   // simple (default), exec, oneshot or notify
	ExecStartPre  []string // command lines, in order
	ExecStart     []string
	ExecStartPost []string
	ExecReload    []string
	ExecStop      []string
	Environment   []string // NAME=VALUE, later wins
	EnvFiles      []string // EnvironmentFile=, "-" prefix: optional
	WorkingDir    string
	Restart       string // no, always, on-success, on-failure, on-abnormal, on-abort
	RestartSec    time.Duration
	KillSignal    syscall.Signal
	TimeoutStop   time.Duration
	// TimeoutStart bounds a Type=notify start: no READY=1 by then and the
	// service is stopped and failed (result timeout).
	TimeoutStart time.Duration
	// NotifyAccess says whose notifications count: main (the default for
	// Type=notify), all or none.
	NotifyAccess    string
	RemainAfterExit bool
	WantedBy        []string // [Install]
	RequiredBy      []string
	HasInstall      bool

	// Ignored lists the settings read but not acted on (capabilities and
	// resource limits: everything in the simulated node runs as root), so
	// `systemctl status` can say so rather than pretend.
	Ignored []string

	stamps map[string]time.Time // file → mtime when loaded (changed on disk?)
}

// Defaults of systemd for what a unit does not say.
const (
	defaultRestartSec   = 100 * time.Millisecond
	defaultTimeoutStop  = 90 * time.Second
	defaultTimeoutStart = 90 * time.Second
	startLimitInterval  = 10 * time.Second
	startLimitBurst     = 5
)

// ErrNoUnit says no unit file of that name exists.
var ErrNoUnit = errors.New("no such unit")

// UnitName completes a name the way systemctl does: "foo" is foo.service.
func UnitName(s string) string {
	if strings.Contains(s, ".") && !strings.HasSuffix(s, ".") {
		return s
	}
	return s + ".service"
}

// LoadUnit reads name from the first of dirs (under root) that has it, with
// every drop-in of every dir; a drop-in file name in a higher-priority dir
// masks the same name in a lower one, as in systemd.
func LoadUnit(root, name string, dirs []string) (*Unit, error) {
	if !strings.HasSuffix(name, ".service") {
		return nil, fmt.Errorf("unit %s: only .service units are supported", name)
	}
	u := &Unit{Name: name, Type: "simple", Restart: "no", RestartSec: defaultRestartSec,
		KillSignal: syscall.SIGTERM, TimeoutStop: defaultTimeoutStop, TimeoutStart: defaultTimeoutStart, stamps: map[string]time.Time{}}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && st.Mode().IsRegular() {
			u.Path = p
			break
		}
	}
	if u.Path == "" {
		return nil, fmt.Errorf("unit %s: %w", name, ErrNoUnit)
	}
	dropins := map[string]string{} // base name → path, first dir wins
	for _, d := range dirs {
		entries, _ := os.ReadDir(filepath.Join(root, d, name+".d"))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".conf") && dropins[e.Name()] == "" {
				dropins[e.Name()] = filepath.Join(d, name+".d", e.Name())
			}
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		u.DropIns = append(u.DropIns, dropins[n])
	}
	for _, p := range append([]string{u.Path}, u.DropIns...) {
		if err := u.apply(root, p); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// apply reads one unit file or drop-in into u.
func (u *Unit) apply(root, p string) error {
	f, err := os.Open(filepath.Join(root, p))
	if err != nil {
		return fmt.Errorf("while reading %s: %w", p, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		u.stamps[p] = st.ModTime()
	}
	opts, err := sdunit.DeserializeOptions(f)
	if err != nil {
		return fmt.Errorf("while parsing %s: %w", p, err)
	}
	for _, o := range opts {
		// go-systemd keeps a continuation's backslash and newline; systemd
		// joins the lines with a space.
		v := strings.TrimSpace(strings.ReplaceAll(o.Value, "\\\n", " "))
		if err := u.set(o.Section, o.Name, v); err != nil {
			return fmt.Errorf("%s: [%s] %s=%s: %w", p, o.Section, o.Name, v, err)
		}
	}
	return nil
}

// set applies one assignment. Lists grow, and an empty value resets them.
func (u *Unit) set(section, key, v string) error {
	list := func(l *[]string) {
		if v == "" {
			*l = nil
		} else {
			*l = append(*l, v)
		}
	}
	var err error
	switch section + "." + key {
	case "Unit.Description":
		u.Description = v
	case "Service.Type":
		if !slices.Contains([]string{"simple", "exec", "oneshot", "notify"}, v) {
			return fmt.Errorf("Type=%s is not supported by the simulated node's service manager (simple, exec, oneshot, notify)", v)
		}
		u.Type = v
	case "Service.ExecStartPre":
		list(&u.ExecStartPre)
	case "Service.ExecStart":
		list(&u.ExecStart)
	case "Service.ExecStartPost":
		list(&u.ExecStartPost)
	case "Service.ExecReload":
		list(&u.ExecReload)
	case "Service.ExecStop":
		list(&u.ExecStop)
	case "Service.Environment":
		if v == "" {
			u.Environment = nil
			break
		}
		words, werr := splitWords(v)
		if werr != nil {
			return werr
		}
		for _, w := range words {
			if !strings.Contains(w, "=") {
				return fmt.Errorf("%q is not NAME=VALUE", w)
			}
		}
		u.Environment = append(u.Environment, words...)
	case "Service.EnvironmentFile":
		list(&u.EnvFiles)
	case "Service.WorkingDirectory":
		u.WorkingDir = v
	case "Service.Restart":
		if !slices.Contains([]string{"no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"}, v) {
			return fmt.Errorf("unknown Restart= value")
		}
		u.Restart = v
	case "Service.RestartSec":
		u.RestartSec, err = ParseTimespan(v)
	case "Service.TimeoutStopSec":
		u.TimeoutStop, err = ParseTimespan(v)
	case "Service.TimeoutStartSec":
		u.TimeoutStart, err = ParseTimespan(v)
	case "Service.NotifyAccess":
		if !slices.Contains([]string{"main", "all", "none"}, v) {
			return fmt.Errorf("NotifyAccess=%s is not supported by the simulated node's service manager (main, all, none)", v)
		}
		u.NotifyAccess = v
	case "Service.KillSignal":
		u.KillSignal, err = parseSignal(v)
	case "Service.RemainAfterExit":
		u.RemainAfterExit, err = parseBool(v)
	case "Install.WantedBy":
		u.HasInstall = true
		u.WantedBy = append(u.WantedBy, strings.Fields(v)...)
	case "Install.RequiredBy":
		u.HasInstall = true
		u.RequiredBy = append(u.RequiredBy, strings.Fields(v)...)
	case "Install.Alias", "Install.Also":
		u.HasInstall = true
	case "Service.AmbientCapabilities", "Service.CapabilityBoundingSet", "Service.LimitNOFILE", "Service.LimitNPROC",
		"Service.User", "Service.Group", "Service.NoNewPrivileges", "Service.ProtectSystem", "Service.PrivateTmp",
		// The sandboxing racker-serve.service asks for: read, shown by
		// systemctl status as not enforced (the node runs no namespaces
		// or seccomp filters per service).
		"Service.ProtectHome", "Service.PrivateDevices", "Service.ProtectKernelTunables", "Service.ProtectKernelModules",
		"Service.ProtectKernelLogs", "Service.ProtectControlGroups", "Service.ProtectClock", "Service.ProtectHostname",
		"Service.RestrictAddressFamilies", "Service.RestrictNamespaces", "Service.RestrictRealtime", "Service.RestrictSUIDSGID",
		"Service.LockPersonality", "Service.MemoryDenyWriteExecute", "Service.SystemCallArchitectures", "Service.UMask":
		if !slices.Contains(u.Ignored, key) {
			u.Ignored = append(u.Ignored, key)
		}
		if key == "User" && v != "" && v != "root" && v != "0" {
			return fmt.Errorf("User=%s: the simulated node runs services as root only", v)
		}
	}
	// Other keys (After=, Wants=, Documentation=, …) order or document
	// units; this manager starts units in name order and ignores them.
	return err
}

// Check refuses what systemd refuses to start (its "bad-setting" state).
func (u *Unit) Check() error {
	switch {
	case len(u.ExecStart) == 0 && u.Type != "oneshot":
		return fmt.Errorf("%s has no ExecStart= setting, which is only allowed for Type=oneshot services. Refusing", u.Name)
	case len(u.ExecStart) > 1 && u.Type != "oneshot":
		return fmt.Errorf("%s has more than one ExecStart= setting, which is only allowed for Type=oneshot services. Refusing", u.Name)
	case len(u.ExecStart) == 0 && len(u.ExecStop) == 0:
		return fmt.Errorf("%s has no ExecStart= and no ExecStop= setting. Refusing", u.Name)
	case u.Type == "oneshot" && u.Restart != "no" && u.Restart != "on-failure" && u.Restart != "on-abnormal" && u.Restart != "on-abort":
		return fmt.Errorf("%s: Type=oneshot allows Restart=no, on-failure, on-abnormal or on-abort only. Refusing", u.Name)
	}
	return nil
}

// ChangedOnDisk says whether a file the unit was read from changed since,
// or a drop-in appeared or vanished (systemd then warns until daemon-reload).
func (u *Unit) ChangedOnDisk(root string, dirs []string) bool {
	fresh, err := LoadUnit(root, u.Name, dirs)
	if err != nil {
		return true
	}
	if fresh.Path != u.Path || !slices.Equal(fresh.DropIns, u.DropIns) {
		return true
	}
	for p, t := range fresh.stamps {
		if !u.stamps[p].Equal(t) {
			return true
		}
	}
	return false
}

// ParseTimespan reads a systemd time span: "5" (seconds), "5s", "100ms",
// "1min 30s", "infinity" (no limit, as a very long duration).
func ParseTimespan(v string) (time.Duration, error) {
	if v == "infinity" {
		return 1 << 62, nil
	}
	var total time.Duration
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return 0, fmt.Errorf("empty time span")
	}
	units := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"ms": time.Millisecond, "msec": time.Millisecond, "us": time.Microsecond, "m": time.Minute, "min": time.Minute,
		"minute": time.Minute, "minutes": time.Minute, "h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour}
	for _, f := range fields {
		num := strings.TrimRightFunc(f, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		n, err := strconv.ParseFloat(num, 64)
		mult, ok := units[f[len(num):]]
		if err != nil || !ok {
			return 0, fmt.Errorf("bad time span %q", v)
		}
		total += time.Duration(n * float64(mult))
	}
	return total, nil
}

func parseSignal(v string) (syscall.Signal, error) {
	names := map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGKILL": syscall.SIGKILL,
		"SIGHUP": syscall.SIGHUP, "SIGQUIT": syscall.SIGQUIT, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2}
	if !strings.HasPrefix(v, "SIG") {
		v = "SIG" + v
	}
	if s, ok := names[v]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("unknown signal %q", v)
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", v)
}

// splitWords splits a setting into words the way systemd does for
// Environment=: whitespace separates, "double" or 'single' quotes group,
// a backslash escapes the next character.
func splitWords(s string) ([]string, error) {
	var out []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			in = true
		case quote == 0 && (c == ' ' || c == '\t' || c == '\n'):
			if in {
				out = append(out, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		out = append(out, w.String())
	}
	return out, nil
}
