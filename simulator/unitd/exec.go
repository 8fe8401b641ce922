package unitd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/simulator/testos"
)

// servicePath is the PATH systemd gives services: no /opt/bin, so a unit
// that names /opt/bin/racker must say so.
const servicePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"

// command is one Exec line, split and expanded.
type command struct {
	argv         []string
	ignoreFailed bool // "-" prefix
}

// parseCommand splits an Exec line by systemd's rules (testos.SplitCommand)
// and expands variables: a word that is exactly $NAME becomes the value's
// whitespace-separated words (none when empty); ${NAME} is replaced within
// a word. Unknown names expand to nothing, as in systemd.
func parseCommand(line string, env map[string]string) (command, error) {
	c, err := testos.SplitCommand(line)
	if err != nil {
		return command{}, err
	}
	out := command{ignoreFailed: c.IgnoreFailed}
	for i, w := range c.Argv {
		if i > 0 && len(w) > 1 && w[0] == '$' && isName(w[1:]) {
			out.argv = append(out.argv, strings.Fields(env[w[1:]])...)
			continue
		}
		out.argv = append(out.argv, expandBraces(w, env))
	}
	if len(out.argv) == 0 {
		return command{}, fmt.Errorf("empty command line %q", line)
	}
	return out, nil
}

func isName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

func expandBraces(w string, env map[string]string) string {
	var b strings.Builder
	for {
		i := strings.Index(w, "${")
		if i < 0 {
			b.WriteString(w)
			return b.String()
		}
		j := strings.IndexByte(w[i:], '}')
		if j < 0 || !isName(w[i+2:i+j]) {
			b.WriteString(w)
			return b.String()
		}
		b.WriteString(w[:i])
		b.WriteString(env[w[i+2:i+j]])
		w = w[i+j+1:]
	}
}

// environment builds a service's environment: systemd's PATH, then
// Environment=, then EnvironmentFile= (whose settings win, as documented
// in systemd.exec), then extra (MAINPID for reload and stop commands).
func (m *Manager) environment(u *Unit, extra ...string) (map[string]string, []string, error) {
	env := map[string]string{"PATH": servicePath}
	order := []string{"PATH"}
	set := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range u.Environment {
		set(kv)
	}
	for _, f := range u.EnvFiles {
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		kvs, err := readEnvFile(filepath.Join(m.Root, f))
		if err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("while reading EnvironmentFile=%s: %w", f, err)
		}
		for _, kv := range kvs {
			set(kv)
		}
	}
	for _, kv := range extra {
		set(kv)
	}
	list := make([]string, 0, len(order))
	for _, k := range order {
		list = append(list, k+"="+env[k])
	}
	return env, list, nil
}

// readEnvFile reads NAME=VALUE lines; # and ; start comments, and a
// value may be quoted.
func readEnvFile(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isName(strings.TrimSpace(k)) {
			return nil, fmt.Errorf("%s:%d: not NAME=VALUE", p, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, strings.TrimSpace(k)+"="+v)
	}
	return out, sc.Err()
}

// lookPath resolves a command the way systemd does: an absolute path as
// is, a plain name in the service PATH (under root).
func (m *Manager) lookPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("%q: a command is an absolute path or a plain name", name)
	}
	for _, d := range filepath.SplitList(servicePath) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(filepath.Join(m.Root, p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in %s", name, servicePath)
}

// spawn starts argv as a service process: its own session (so a stop
// reaches its whole process group, as systemd's cgroup kill reaches every
// process of the unit), stdin from /dev/null, output appended to the
// unit's log. onExit runs once the manager reaped it.
func (m *Manager) spawn(argv, env []string, dir string, logf *os.File, onExit func(int, syscall.WaitStatus)) (int, error) {
	path, err := m.lookPath(argv[0])
	if err != nil {
		return 0, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	if dir == "" {
		dir = "/"
	}
	m.procMu.Lock()
	defer m.procMu.Unlock()
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir: dir, Env: env, Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, err
	}
	m.procs[pid] = onExit
	if !m.ReapAll {
		go func() {
			var ws syscall.WaitStatus
			for {
				_, err := syscall.Wait4(pid, &ws, 0, nil)
				if !errors.Is(err, syscall.EINTR) {
					break
				}
			}
			m.exited(pid, ws)
		}()
	}
	return pid, nil
}

// exited hands a reaped child's status to whoever started it; orphans that
// the node's PID 1 inherited have no one and are just reaped.
func (m *Manager) exited(pid int, ws syscall.WaitStatus) {
	m.procMu.Lock()
	fn := m.procs[pid]
	delete(m.procs, pid)
	m.procMu.Unlock()
	if fn != nil {
		fn(pid, ws)
	}
}

// reapAll is PID 1's reaper: every child, including orphans reparented to
// it, is collected on SIGCHLD.
func (m *Manager) reapAll(sigchld <-chan os.Signal, stop <-chan struct{}) {
	for {
		for {
			var ws syscall.WaitStatus
			// procMu serialises with spawn: a child that exits before its
			// handler is registered is handed over once it is.
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			m.exited(pid, ws)
		}
		select {
		case <-sigchld:
		case <-stop:
			return
		case <-time.After(time.Second): // a lost signal never strands a zombie
		}
	}
}

// killGroup signals a service's process group (its session), and the
// process itself in case it left the group.
func killGroup(pid int, sig syscall.Signal) {
	_ = unix.Kill(-pid, sig)
	_ = unix.Kill(pid, sig)
}

// describe renders a wait status as systemctl status does.
func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		name := "FAILURE"
		switch ws.ExitStatus() {
		case 0:
			name = "SUCCESS"
		case 203:
			name = "EXEC"
		}
		return "code=exited, status=" + strconv.Itoa(ws.ExitStatus()) + "/" + name
	case ws.Signaled():
		return fmt.Sprintf("code=killed, signal=%s", strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG"))
	}
	return "code=unknown"
}

// cleanExit is systemd's notion of a clean exit of a main process: exit
// code 0, or one of the signals a service is stopped with.
func cleanExit(ws syscall.WaitStatus) bool {
	if ws.Exited() {
		return ws.ExitStatus() == 0
	}
	if ws.Signaled() {
		switch ws.Signal() {
		case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE:
			return true
		}
	}
	return false
}

// shouldRestart applies Restart= to how the main process ended
// (systemd.service's table).
func shouldRestart(policy string, ws syscall.WaitStatus) bool {
	clean := cleanExit(ws)
	signaled := ws.Signaled() && !clean
	switch policy {
	case "always":
		return true
	case "on-success":
		return clean
	case "on-failure":
		return !clean
	case "on-abnormal":
		return signaled
	case "on-abort":
		return signaled
	}
	return false
}
