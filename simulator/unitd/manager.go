package unitd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Manager runs service units the way systemd does for the subset Racker's
// installer and unit use: it loads units with their drop-ins, keeps the
// loaded definition until daemon-reload, starts, stops, restarts and
// reloads services, restarts them per Restart=, and enables them through
// the same [Install] symlinks systemctl makes.
type Manager struct {
	// Root prefixes every file the manager reads or writes: "/" in the
	// node, a test folder in unit tests (commands still run on the host).
	Root string
	// Dirs are the unit folders (default UnitDirs).
	Dirs []string
	// LogDir holds one log per unit, what the unit printed and what the
	// manager said about it: the node's journal (default /var/log/units).
	LogDir string
	// ReapAll makes the manager reap every child (it is PID 1 and inherits
	// orphans); otherwise it waits for the processes it started only.
	ReapAll bool
	Logger  *slog.Logger

	mu    sync.Mutex
	units map[string]*Unit    // loaded definitions
	svcs  map[string]*service // runtime state, by unit name

	procMu sync.Mutex
	procs  map[int]func(int, syscall.WaitStatus)
}

// service is a unit's runtime state, systemd's ActiveState/SubState.
type service struct {
	name     string
	job      sync.Mutex // one start/stop/restart/reload at a time
	unit     *Unit      // the definition the current run started from
	state    string     // inactive, activating, active, deactivating, failed
	sub      string     // dead, running, exited, auto-restart, stop-sigterm, failed
	result   string     // success, exit-code, signal, start-limit-hit, resources, bad-setting
	mainPID  int
	lastExit string // how the last main process ended
	since    time.Time
	restarts int // automatic restarts (NRestarts)
	starts   []time.Time
	timer    *time.Timer   // a pending automatic restart
	stopped  chan struct{} // closed when the main process ends during a stop
	lastPID  int           // the main PID of the previous run (status shows it)
	// Type=notify: the run's notification socket, a channel closed when
	// its main process ends, and the last STATUS= it sent.
	notify *notifier
	exited chan struct{}
	status string
}

// NewManager makes a manager over root.
func NewManager(root string, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{Root: root, Dirs: UnitDirs, LogDir: "/var/log/units", Logger: log,
		units: map[string]*Unit{}, svcs: map[string]*service{}, procs: map[int]func(int, syscall.WaitStatus){}}
}

// unitDef returns the loaded definition of name, loading it on first use.
func (m *Manager) unitDef(name string) (*Unit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.units[name]; ok {
		return u, nil
	}
	u, err := LoadUnit(m.Root, name, m.Dirs)
	if err != nil {
		return nil, err
	}
	m.units[name] = u
	return u, nil
}

// DaemonReload forgets every loaded definition: the next use reads the
// files again. Running services keep their processes.
func (m *Manager) DaemonReload() {
	m.mu.Lock()
	m.units = map[string]*Unit{}
	m.mu.Unlock()
	m.Logger.Info("reloading unit files")
}

func (m *Manager) svc(name string) *service {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.svcs[name]
	if !ok {
		s = &service{name: name, state: "inactive", sub: "dead"}
		m.svcs[name] = s
	}
	return s
}

// journal opens the unit's log for appending.
func (m *Manager) journal(name string) (*os.File, error) {
	dir := filepath.Join(m.Root, m.LogDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
}

// note writes a manager message to the unit's log and to the console.
func (m *Manager) note(name, msg string) {
	m.Logger.Info(msg, "unit", name)
	if f, err := m.journal(name); err == nil {
		fmt.Fprintf(f, "%s unitd[%d]: %s: %s\n", time.Now().UTC().Format(time.RFC3339), os.Getpid(), name, msg)
		f.Close()
	}
}

// Start starts a unit; an active one is left alone.
func (m *Manager) Start(ctx context.Context, name string) error {
	u, err := m.unitDef(name)
	if err != nil {
		return err
	}
	s := m.svc(name)
	s.job.Lock()
	defer s.job.Unlock()
	return m.start(ctx, s, u)
}

func (m *Manager) start(ctx context.Context, s *service, u *Unit) error {
	m.mu.Lock()
	if (s.state == "active" || s.state == "activating") && s.sub != "auto-restart" {
		m.mu.Unlock()
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if err := u.Check(); err != nil {
		s.state, s.sub, s.result = "failed", "failed", "bad-setting"
		m.mu.Unlock()
		m.note(s.name, err.Error())
		return fmt.Errorf("Unit %s has a bad unit file setting: %w", s.name, err)
	}
	now := time.Now()
	s.starts = slices.DeleteFunc(s.starts, func(t time.Time) bool { return now.Sub(t) > startLimitInterval })
	if len(s.starts) >= startLimitBurst {
		s.state, s.sub, s.result = "failed", "failed", "start-limit-hit"
		m.mu.Unlock()
		m.note(s.name, "Start request repeated too quickly.")
		return fmt.Errorf("Start request repeated too quickly for %s (more than %d starts in %s)", s.name, startLimitBurst, startLimitInterval)
	}
	s.starts = append(s.starts, now)
	s.unit, s.state, s.sub, s.result = u, "activating", "start", ""
	m.mu.Unlock()

	fail := func(result string, err error) error {
		m.mu.Lock()
		s.state, s.sub, s.result = "failed", "failed", result
		m.mu.Unlock()
		m.note(s.name, "Failed with result '"+result+"': "+err.Error())
		return fmt.Errorf("Job for %s failed: %w", s.name, err)
	}
	env, envList, err := m.environment(u)
	if err != nil {
		return fail("resources", err)
	}
	logf, err := m.journal(s.name)
	if err != nil {
		return fail("resources", err)
	}
	defer logf.Close()
	for _, line := range u.ExecStartPre {
		if err := m.runControl(ctx, line, env, envList, u.WorkingDir, logf); err != nil {
			return fail("exit-code", fmt.Errorf("ExecStartPre: %w", err))
		}
	}
	if u.Type == "oneshot" {
		for _, line := range append(slices.Clone(u.ExecStart), u.ExecStartPost...) {
			if err := m.runControl(ctx, line, env, envList, u.WorkingDir, logf); err != nil {
				return fail("exit-code", err)
			}
		}
		m.mu.Lock()
		s.state, s.sub, s.result, s.since = "inactive", "dead", "success", time.Now()
		if u.RemainAfterExit {
			s.state, s.sub = "active", "exited"
		}
		m.mu.Unlock()
		m.note(s.name, "Finished "+describeUnit(u)+".")
		return nil
	}

	cmd, err := parseCommand(u.ExecStart[0], env)
	if err != nil {
		return fail("bad-setting", err)
	}
	var exited chan struct{}
	if u.Type == "notify" {
		n, err := m.openNotify(s)
		if err != nil {
			return fail("resources", err)
		}
		exited = make(chan struct{})
		m.mu.Lock()
		s.notify, s.exited, s.status = n, exited, ""
		m.mu.Unlock()
		envList = append(slices.Clone(envList), "NOTIFY_SOCKET="+n.path)
	}
	pid, err := m.spawn(cmd.argv, envList, u.WorkingDir, logf, func(pid int, ws syscall.WaitStatus) { m.mainExited(s, pid, ws) })
	if err != nil {
		// Type=exec reports a failed execve to the caller; Type=simple has
		// already returned by then and finds out afterwards (203/EXEC).
		m.note(s.name, fmt.Sprintf("Failed to execute %s: %v", cmd.argv[0], err))
		m.mainExited(s, -1, syscall.WaitStatus(203<<8))
		if u.Type == "exec" || u.Type == "notify" { // notify: the job waited for READY=1
			return fmt.Errorf("Job for %s failed: %s: %w", s.name, cmd.argv[0], err)
		}
		return nil
	}
	m.mu.Lock()
	if s.state == "activating" { // not already exited and handled
		s.mainPID, s.state, s.sub, s.since = pid, "active", "running", time.Now()
		if u.Type == "notify" {
			s.state, s.sub = "activating", "start"
		}
	}
	m.mu.Unlock()
	if u.Type == "notify" {
		ok, result := m.awaitReady(s, s.notify, exited, u, pid)
		if !ok {
			return fmt.Errorf("Job for %s failed because %s. See \"journalctl -u %s\" for details", s.name,
				map[string]string{"timeout": "a timeout was exceeded", "exit-code": "the control process exited with error code"}[result], s.name)
		}
		m.mu.Lock()
		if s.state == "activating" {
			s.state, s.sub, s.since = "active", "running", time.Now()
		}
		m.mu.Unlock()
	}
	m.note(s.name, fmt.Sprintf("Started %s (main PID %d).", describeUnit(u), pid))
	for _, line := range u.ExecStartPost {
		if err := m.runControl(ctx, line, env, envList, u.WorkingDir, logf); err != nil {
			m.note(s.name, "ExecStartPost failed: "+err.Error())
		}
	}
	return nil
}

// mainExited applies how a main process ended: the end of a stop, an
// automatic restart per Restart=, or inactive/failed.
func (m *Manager) mainExited(s *service, pid int, ws syscall.WaitStatus) {
	m.mu.Lock()
	if pid > 0 && s.mainPID != pid && s.state != "activating" {
		m.mu.Unlock()
		return
	}
	s.mainPID, s.lastExit = 0, describe(ws)
	if pid > 0 {
		s.lastPID = pid
	}
	if s.notify != nil {
		s.notify.close()
		s.notify = nil
	}
	if s.exited != nil {
		close(s.exited)
		s.exited = nil
	}
	if s.state == "deactivating" {
		s.state, s.sub, s.result, s.since = "inactive", "dead", "success", time.Now()
		if s.stopped != nil {
			close(s.stopped)
			s.stopped = nil
		}
		m.mu.Unlock()
		m.note(s.name, "Main process exited, "+describe(ws)+"; stopped.")
		return
	}
	result := "success"
	switch {
	case ws.Exited() && ws.ExitStatus() != 0:
		result = "exit-code"
	case ws.Signaled() && !cleanExit(ws):
		result = "signal"
	}
	u := s.unit
	msg := "Main process exited, " + describe(ws)
	s.since = time.Now()
	switch {
	case u != nil && shouldRestart(u.Restart, ws):
		s.state, s.sub, s.result = "activating", "auto-restart", result
		s.timer = time.AfterFunc(u.RestartSec, func() { m.autoRestart(s) })
		msg += fmt.Sprintf("; scheduling a restart in %s (Restart=%s).", u.RestartSec, u.Restart)
	case result == "success":
		s.state, s.sub, s.result = "inactive", "dead", result
	default:
		s.state, s.sub, s.result = "failed", "failed", result
	}
	m.mu.Unlock()
	m.note(s.name, msg)
}

func (m *Manager) autoRestart(s *service) {
	s.job.Lock()
	defer s.job.Unlock()
	m.mu.Lock()
	if s.sub != "auto-restart" {
		m.mu.Unlock()
		return
	}
	s.timer = nil
	s.restarts++
	m.mu.Unlock()
	u, err := m.unitDef(s.name)
	if err != nil {
		m.note(s.name, "automatic restart: "+err.Error())
		m.mu.Lock()
		s.state, s.sub = "failed", "failed"
		m.mu.Unlock()
		return
	}
	if err := m.start(context.Background(), s, u); err != nil {
		m.note(s.name, "automatic restart: "+err.Error())
	}
}

func describeUnit(u *Unit) string {
	if u.Description != "" {
		return u.Description
	}
	return u.Name
}

// errNotFound renders a missing unit the way systemctl says it.
func errNotFound(err error) bool { return errors.Is(err, ErrNoUnit) }
