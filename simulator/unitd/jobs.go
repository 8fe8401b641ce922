package unitd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Stop stops a unit: ExecStop=, then KillSignal= to its process group,
// then SIGKILL after TimeoutStopSec=; whatever is left of the group is
// killed too (systemd's KillMode=control-group).
func (m *Manager) Stop(ctx context.Context, name string) error {
	s := m.svc(name)
	s.job.Lock()
	defer s.job.Unlock()
	return m.stop(ctx, s)
}

func (m *Manager) stop(ctx context.Context, s *service) error {
	m.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.mainPID <= 0 {
		wasActive := s.state == "active"
		if s.state != "failed" {
			s.state, s.sub = "inactive", "dead"
		}
		u := s.unit
		m.mu.Unlock()
		if wasActive && u != nil && len(u.ExecStop) > 0 { // a oneshot with RemainAfterExit
			m.runStopCommands(ctx, s.name, u, 0)
		}
		return nil
	}
	pid := s.mainPID
	done := make(chan struct{})
	s.state, s.sub, s.stopped = "deactivating", "stop-sigterm", done
	u := s.unit
	m.mu.Unlock()
	if cur, err := m.unitDef(s.name); err == nil {
		u = cur // a daemon-reload since the start applies to the stop
	}
	m.note(s.name, "Stopping "+describeUnit(u)+"...")
	m.runStopCommands(ctx, s.name, u, pid)
	killGroup(pid, u.KillSignal)
	killGroup(pid, syscall.SIGCONT)
	select {
	case <-done:
	case <-time.After(u.TimeoutStop):
		m.note(s.name, "State 'stop-sigterm' timed out. Killing.")
		killGroup(pid, syscall.SIGKILL)
		<-done
	}
	killGroup(pid, syscall.SIGKILL) // the rest of the unit's processes
	m.note(s.name, "Stopped "+describeUnit(u)+".")
	return nil
}

func (m *Manager) runStopCommands(ctx context.Context, name string, u *Unit, pid int) {
	if len(u.ExecStop) == 0 {
		return
	}
	env, list, err := m.environment(u, "MAINPID="+strconv.Itoa(pid))
	if err != nil {
		m.note(name, "ExecStop: "+err.Error())
		return
	}
	logf, err := m.journal(name)
	if err != nil {
		return
	}
	defer logf.Close()
	for _, line := range u.ExecStop {
		if err := m.runControl(ctx, line, env, list, u.WorkingDir, logf); err != nil {
			m.note(name, "ExecStop: "+err.Error())
		}
	}
}

// Restart stops and starts a unit (starts it when it is not running).
func (m *Manager) Restart(ctx context.Context, name string) error {
	u, err := m.unitDef(name)
	if err != nil {
		return err
	}
	s := m.svc(name)
	s.job.Lock()
	defer s.job.Unlock()
	if err := m.stop(ctx, s); err != nil {
		return err
	}
	return m.start(ctx, s, u)
}

// Reload runs ExecReload= with $MAINPID; a unit without one cannot be
// reloaded, and neither can one that is not running.
func (m *Manager) Reload(ctx context.Context, name string) error {
	u, err := m.unitDef(name)
	if err != nil {
		return err
	}
	s := m.svc(name)
	s.job.Lock()
	defer s.job.Unlock()
	if len(u.ExecReload) == 0 {
		return fmt.Errorf("Job type reload is not applicable for unit %s", name)
	}
	m.mu.Lock()
	pid, state := s.mainPID, s.state
	m.mu.Unlock()
	if state != "active" {
		return fmt.Errorf("Unit %s cannot be reloaded because it is inactive", name)
	}
	env, list, err := m.environment(u, "MAINPID="+strconv.Itoa(pid))
	if err != nil {
		return err
	}
	logf, err := m.journal(name)
	if err != nil {
		return err
	}
	defer logf.Close()
	m.note(name, "Reloading "+describeUnit(u)+"...")
	for _, line := range u.ExecReload {
		if err := m.runControl(ctx, line, env, list, u.WorkingDir, logf); err != nil {
			m.note(name, "Reload failed: "+err.Error())
			return fmt.Errorf("Job for %s failed: %w", name, err)
		}
	}
	m.note(name, "Reloaded "+describeUnit(u)+".")
	return nil
}

// runControl runs one Exec line to its end; a failure counts unless the
// line has the "-" prefix.
func (m *Manager) runControl(ctx context.Context, line string, env map[string]string, envList []string, dir string, logf *os.File) error {
	cmd, err := parseCommand(line, env)
	if err != nil {
		return err
	}
	done := make(chan syscall.WaitStatus, 1)
	pid, err := m.spawn(cmd.argv, envList, dir, logf, func(_ int, ws syscall.WaitStatus) { done <- ws })
	if err != nil {
		if cmd.ignoreFailed {
			return nil
		}
		return fmt.Errorf("%s: %w", cmd.argv[0], err)
	}
	select {
	case ws := <-done:
		if !cmd.ignoreFailed && !(ws.Exited() && ws.ExitStatus() == 0) {
			return fmt.Errorf("%s: %s", strings.Join(cmd.argv, " "), describe(ws))
		}
		return nil
	case <-ctx.Done():
		killGroup(pid, syscall.SIGKILL)
		return ctx.Err()
	}
}

// ActiveState is what `systemctl is-active` prints.
func (m *Manager) ActiveState(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.svcs[name]; ok {
		return s.state
	}
	return "inactive"
}

// MainPID is the running main process of a unit, 0 when none.
func (m *Manager) MainPID(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.svcs[name]; ok {
		return s.mainPID
	}
	return 0
}

// StartWanted starts every unit enabled for the boot (linked from
// multi-user.target.wants or default.target.wants), in name order; the
// unit files' After=/Before= are not read.
func (m *Manager) StartWanted(ctx context.Context) []error {
	var names []string
	for _, d := range m.Dirs {
		for _, t := range []string{"multi-user.target.wants", "default.target.wants"} {
			entries, _ := os.ReadDir(filepath.Join(m.Root, d, t))
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".service") && !slices.Contains(names, e.Name()) {
					names = append(names, e.Name())
				}
			}
		}
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		if err := m.Start(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errs
}

// StopAll stops every running unit at once (shutdown).
func (m *Manager) StopAll(ctx context.Context) {
	m.mu.Lock()
	var names []string
	for n, s := range m.svcs {
		if s.state != "inactive" && s.state != "failed" {
			names = append(names, n)
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = m.Stop(ctx, n)
		}()
	}
	wg.Wait()
}
