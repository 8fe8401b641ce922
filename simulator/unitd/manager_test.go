package unitd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestManager is a manager over a temporary root whose units run real
// processes (/bin/sh) on the host; it stops them when the test ends.
func newTestManager(t *testing.T) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	m := NewManager(root, nil)
	t.Cleanup(func() { m.StopAll(context.Background()) })
	return m, root
}

// ctl runs a systemctl command line against m.
func ctl(t *testing.T, m *Manager, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := m.Systemctl(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// A long-running service: start, is-active, MainPID, the log, stop with
// its KillSignal reaching the whole process group, then inactive.
func TestStartStopSimpleService(t *testing.T) {
	m, root := newTestManager(t)
	marker := filepath.Join(root, "child-pid")
	writeFile(t, root, "/etc/systemd/system/web.service", `[Unit]
Description=A test web server
[Service]
Environment=GREETING=hello
ExecStart=/bin/sh -c 'echo "$GREETING from $$"; sleep 300 & echo $! > `+marker+`; wait'
KillSignal=SIGINT
`)
	if code, _, errs := ctl(t, m, "start", "web"); code != 0 {
		t.Fatalf("start: %d %s", code, errs)
	}
	code, out, _ := ctl(t, m, "is-active", "web.service")
	if code != 0 || out != "active\n" {
		t.Fatalf("is-active: %d %q", code, out)
	}
	pid := m.MainPID("web.service")
	if !alive(pid) {
		t.Fatalf("main PID %d not running", pid)
	}
	_, show, _ := ctl(t, m, "show", "-p", "MainPID", "--value", "web.service")
	if show != strconv.Itoa(pid)+"\n" {
		t.Errorf("show MainPID: %q, want %d", show, pid)
	}
	eventually(t, "the child wrote its PID", func() bool { _, err := os.Stat(marker); return err == nil })
	b, _ := os.ReadFile(marker)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	eventually(t, "the log shows the output", func() bool {
		return strings.Contains(m.journalTail("web.service", 0), "hello from "+strconv.Itoa(pid))
	})
	_, status, _ := ctl(t, m, "status", "web")
	for _, want := range []string{"● web.service - A test web server", "Active: active (running)", "Main PID: " + strconv.Itoa(pid)} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if code, _, errs := ctl(t, m, "stop", "web"); code != 0 {
		t.Fatalf("stop: %d %s", code, errs)
	}
	if code, out, _ := ctl(t, m, "is-active", "web"); code != 3 || out != "inactive\n" {
		t.Errorf("after stop: %d %q", code, out)
	}
	eventually(t, "every process of the unit ended", func() bool { return !alive(pid) && !alive(child) })
	if code, _, _ := ctl(t, m, "status", "web"); code != 3 {
		t.Errorf("status of a stopped unit exits %d, want 3", code)
	}
}

// Restart=always brings a crashed service back after RestartSec and counts
// it; systemd's start limit (5 starts in 10 s) ends a crash loop in failed.
func TestRestartAlwaysAndTheStartLimit(t *testing.T) {
	m, root := newTestManager(t)
	writeFile(t, root, "/etc/systemd/system/crash.service", "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 3'\nRestart=always\nRestartSec=50ms\n")
	if code, _, errs := ctl(t, m, "start", "crash"); code != 0 {
		t.Fatalf("start: %s", errs)
	}
	eventually(t, "a restart", func() bool { _, v, _ := ctl(t, m, "show", "-p", "NRestarts", "--value", "crash"); return v != "0\n" })
	eventually(t, "the start limit", func() bool { return m.ActiveState("crash.service") == "failed" })
	_, out, _ := ctl(t, m, "show", "-p", "Result", "-p", "NRestarts", "crash")
	if !strings.Contains(out, "Result=start-limit-hit") || !strings.Contains(out, "NRestarts=5") {
		t.Errorf("after the crash loop: %s", out)
	}
	if code, _, _ := ctl(t, m, "start", "crash"); code == 0 {
		t.Error("start right after the limit was hit succeeded")
	}
	if code, _, _ := ctl(t, m, "is-failed", "crash"); code != 0 {
		t.Error("is-failed says no")
	}
	ctl(t, m, "reset-failed", "crash")
	if m.ActiveState("crash.service") != "inactive" {
		t.Error("reset-failed did not reset")
	}

	// Restart=on-failure does not restart a clean exit.
	writeFile(t, root, "/etc/systemd/system/once.service", "[Service]\nExecStart=/bin/true\nRestart=on-failure\nRestartSec=10ms\n")
	ctl(t, m, "start", "once")
	eventually(t, "once ends", func() bool { return m.ActiveState("once.service") == "inactive" })
	time.Sleep(100 * time.Millisecond)
	if _, v, _ := ctl(t, m, "show", "-p", "NRestarts", "--value", "once"); v != "0\n" {
		t.Errorf("a clean exit was restarted: %s", v)
	}
}

// reload runs ExecReload with $MAINPID; restart gives a new main process;
// a unit without ExecReload cannot be reloaded.
func TestReloadAndRestart(t *testing.T) {
	m, root := newTestManager(t)
	hup := filepath.Join(root, "hup")
	writeFile(t, root, "/etc/systemd/system/d.service", "[Service]\nExecStart=/bin/sh -c 'trap \"echo hup >> "+hup+"\" HUP; while :; do sleep 0.05; done'\nExecReload=/bin/kill -HUP $MAINPID\n")
	if code, _, errs := ctl(t, m, "reload", "d"); code == 0 || !strings.Contains(errs, "inactive") {
		t.Errorf("reload of an inactive unit: %d %s", code, errs)
	}
	ctl(t, m, "start", "d")
	first := m.MainPID("d.service")
	time.Sleep(100 * time.Millisecond) // the shell sets its trap
	if code, _, errs := ctl(t, m, "reload", "d"); code != 0 {
		t.Fatalf("reload: %s", errs)
	}
	eventually(t, "the service got SIGHUP", func() bool { b, _ := os.ReadFile(hup); return string(b) == "hup\n" })
	if m.MainPID("d.service") != first {
		t.Error("reload changed the main process")
	}
	if code, _, errs := ctl(t, m, "restart", "d"); code != 0 {
		t.Fatalf("restart: %s", errs)
	}
	second := m.MainPID("d.service")
	if second == first || !alive(second) || alive(first) {
		t.Errorf("restart: main PID %d → %d", first, second)
	}
	writeFile(t, root, "/etc/systemd/system/plain.service", "[Service]\nExecStart=/bin/sleep 30\n")
	ctl(t, m, "start", "plain")
	if code, _, errs := ctl(t, m, "reload", "plain"); code == 0 || !strings.Contains(errs, "not applicable") {
		t.Errorf("reload without ExecReload: %d %s", code, errs)
	}
}

// A changed unit file is not used before daemon-reload, and systemctl
// warns, as systemd does.
func TestDaemonReloadIsNeededForChangedUnits(t *testing.T) {
	m, root := newTestManager(t)
	out := filepath.Join(root, "ran")
	writeFile(t, root, "/etc/systemd/system/v.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo one > "+out+"'\n")
	ctl(t, m, "start", "v")
	writeFile(t, root, "/etc/systemd/system/v.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo two > "+out+"'\n")
	// A fresh mtime even on a coarse clock.
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(filepath.Join(root, "/etc/systemd/system/v.service"), later, later)
	code, _, errs := ctl(t, m, "start", "v")
	if b, _ := os.ReadFile(out); code != 0 || string(b) != "one\n" {
		t.Errorf("before daemon-reload the old definition runs: %d %q", code, b)
	}
	if !strings.Contains(errs, "changed on disk. Run 'systemctl daemon-reload'") {
		t.Errorf("no warning: %q", errs)
	}
	ctl(t, m, "daemon-reload")
	ctl(t, m, "start", "v")
	if b, _ := os.ReadFile(out); string(b) != "two\n" {
		t.Errorf("after daemon-reload: %q", b)
	}
}

// enable and disable make and remove the [Install] links; units wanted by
// multi-user.target start at boot.
func TestEnableDisableAndBoot(t *testing.T) {
	m, root := newTestManager(t)
	writeFile(t, root, "/etc/systemd/system/a.service", "[Service]\nExecStart=/bin/sleep 30\n[Install]\nWantedBy=multi-user.target\n")
	writeFile(t, root, "/usr/lib/systemd/system/s.service", "[Service]\nExecStart=/bin/sleep 30\n")
	if code, out, _ := ctl(t, m, "is-enabled", "a"); code != 1 || out != "disabled\n" {
		t.Errorf("is-enabled before: %d %q", code, out)
	}
	code, out, _ := ctl(t, m, "enable", "a")
	if code != 0 || !strings.Contains(out, "Created symlink /etc/systemd/system/multi-user.target.wants/a.service → /etc/systemd/system/a.service") {
		t.Errorf("enable: %d %q", code, out)
	}
	if target, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/a.service")); err != nil || target != "/etc/systemd/system/a.service" {
		t.Errorf("link: %q %v", target, err)
	}
	if code, out, _ := ctl(t, m, "is-enabled", "a"); code != 0 || out != "enabled\n" {
		t.Errorf("is-enabled after: %d %q", code, out)
	}
	if code, out, _ := ctl(t, m, "is-enabled", "s"); code != 0 || out != "static\n" {
		t.Errorf("is-enabled of a unit without [Install]: %d %q", code, out)
	}
	if code, _, errs := ctl(t, m, "enable", "nope"); code != 1 || !strings.Contains(errs, "does not exist") {
		t.Errorf("enable of a missing unit: %d %q", code, errs)
	}

	boot := NewManager(root, nil)
	t.Cleanup(func() { boot.StopAll(context.Background()) })
	if errs := boot.StartWanted(context.Background()); len(errs) != 0 {
		t.Fatal(errs)
	}
	if boot.ActiveState("a.service") != "active" || boot.ActiveState("s.service") != "inactive" {
		t.Errorf("at boot: a %s, s %s", boot.ActiveState("a.service"), boot.ActiveState("s.service"))
	}
	if code, _, _ := ctl(t, boot, "disable", "--now", "a"); code != 0 || boot.ActiveState("a.service") != "inactive" {
		t.Errorf("disable --now: %d %s", code, boot.ActiveState("a.service"))
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/a.service")); err == nil {
		t.Error("disable left the link")
	}
}

// A service that ignores its KillSignal is killed after TimeoutStopSec.
func TestStopTimesOutToSIGKILL(t *testing.T) {
	m, root := newTestManager(t)
	writeFile(t, root, "/etc/systemd/system/stubborn.service", "[Service]\nExecStart=/bin/sh -c 'trap \"\" TERM; while :; do sleep 0.05; done'\nTimeoutStopSec=300ms\n")
	ctl(t, m, "start", "stubborn")
	pid := m.MainPID("stubborn.service")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if code, _, errs := ctl(t, m, "stop", "stubborn"); code != 0 {
		t.Fatal(errs)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("stopped after %s, before the timeout", took)
	}
	if alive(pid) {
		t.Error("still running after stop")
	}
	if !strings.Contains(m.journalTail("stubborn.service", 0), "timed out. Killing") {
		t.Error("the log does not say it killed")
	}
}

// systemctl's messages and exit codes for the usual mistakes.
func TestSystemctlErrors(t *testing.T) {
	m, _ := newTestManager(t)
	for _, c := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"start", "ghost"}, 5, "Unit ghost.service not found"},
		{[]string{"stop", "ghost"}, 5, "not loaded"},
		{[]string{"status", "ghost"}, 4, "could not be found"},
		{[]string{"is-active", "ghost"}, 3, ""},
		{[]string{"frobnicate"}, 1, "Unknown command verb"},
		{[]string{"start"}, 1, "Too few arguments"},
		{[]string{"--bogus", "start", "x"}, 1, "unrecognized option"},
		{[]string{"reboot"}, 1, "racker-sim"},
	} {
		code, _, errs := ctl(t, m, c.args...)
		if code != c.code || !strings.Contains(errs, c.text) {
			t.Errorf("systemctl %v: %d %q, want %d %q", c.args, code, errs, c.code, c.text)
		}
	}
}

// A Type=simple unit whose program is missing starts "successfully" and
// then fails with 203/EXEC, as in systemd; Type=exec reports it at once.
func TestMissingProgram(t *testing.T) {
	m, root := newTestManager(t)
	writeFile(t, root, "/etc/systemd/system/s.service", "[Service]\nExecStart=/nonexistent/prog\n")
	writeFile(t, root, "/etc/systemd/system/e.service", "[Service]\nType=exec\nExecStart=/nonexistent/prog\n")
	if code, _, errs := ctl(t, m, "start", "s"); code != 0 {
		t.Errorf("simple: %d %s", code, errs)
	}
	if st := m.ActiveState("s.service"); st != "failed" {
		t.Errorf("simple ends %s", st)
	}
	if !strings.Contains(m.journalTail("s.service", 0), "status=203/EXEC") {
		t.Errorf("log: %s", m.journalTail("s.service", 0))
	}
	if code, _, _ := ctl(t, m, "start", "e"); code != 1 {
		t.Errorf("exec: %d", code)
	}
}

// The control socket carries a systemctl call and its answer.
func TestControlSocket(t *testing.T) {
	m, root := newTestManager(t)
	writeFile(t, root, "/etc/systemd/system/a.service", "[Service]\nExecStart=/bin/sleep 30\n")
	ln, err := ListenControl(root)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go m.ServeControl(context.Background(), ln)
	sock := filepath.Join(root, ControlSocket)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st, err)
	}
	var out, errb bytes.Buffer
	if code := CallControl(sock, []string{"start", "a"}, &out, &errb); code != 0 {
		t.Fatalf("start over the socket: %d %s", code, errb.String())
	}
	out.Reset()
	if code := CallControl(sock, []string{"is-active", "a"}, &out, &errb); code != 0 || out.String() != "active\n" {
		t.Errorf("is-active over the socket: %d %q", code, out.String())
	}
	if code := CallControl(filepath.Join(root, "none.sock"), []string{"is-active", "a"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "Can't operate") {
		t.Errorf("no PID 1: %d %q", code, errb.String())
	}
}

func TestJournalctl(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.service.log"), []byte("1\n2\n3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.service.log"), []byte("x\n"), 0o644)
	var out, errb bytes.Buffer
	if code := Journalctl(dir, []string{"-u", "a", "-n", "2", "--no-pager"}, &out, &errb, nil); code != 0 || out.String() != "2\n3\n" {
		t.Errorf("-u a -n 2: %d %q %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := Journalctl(dir, nil, &out, &errb, nil); code != 0 || out.String() != "1\n2\n3\nx\n" {
		t.Errorf("all: %q", out.String())
	}
	if code := Journalctl(dir, []string{"--since", "today"}, &out, &errb, nil); code != 1 {
		t.Error("an unsupported option was accepted")
	}
	stop := make(chan struct{})
	done := make(chan int)
	var follow syncBuffer
	go func() { done <- Journalctl(dir, []string{"-u", "b", "-f"}, &follow, &errb, stop) }()
	time.Sleep(100 * time.Millisecond)
	f, _ := os.OpenFile(filepath.Join(dir, "b.service.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("y\n")
	f.Close()
	eventually(t, "-f shows the new line", func() bool { return follow.String() == "x\ny\n" })
	close(stop)
	<-done
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
