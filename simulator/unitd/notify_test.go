package unitd

import (
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyHelper, set in a service's environment, makes this test binary a
// Type=notify service (see TestMain): "ready" says STATUS= then READY=1
// after a moment and RELOADING=1/READY=1 around SIGHUP; "never" never says
// it is ready; "other" sends READY=1 from a child process, not the main
// one.
const notifyHelper = "UNITD_TEST_NOTIFY"

func TestMain(m *testing.M) {
	if mode := os.Getenv(notifyHelper); mode != "" {
		os.Exit(notifyService(mode))
	}
	os.Exit(m.Run())
}

func sdNotify(state string) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
	if err != nil {
		os.Stderr.WriteString("notify: " + err.Error() + "\n")
		return
	}
	c.Write([]byte(state))
	c.Close()
}

func notifyService(mode string) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	switch mode {
	case "ready":
		sdNotify("STATUS=opening sockets")
		time.Sleep(300 * time.Millisecond)
		sdNotify("READY=1\nSTATUS=serving")
	case "other":
		self, _ := os.Executable()
		env := []string{notifyHelper + "=child", "NOTIFY_SOCKET=" + os.Getenv("NOTIFY_SOCKET")}
		p, _ := os.StartProcess(self, []string{self, "-test.run=^$"}, &os.ProcAttr{
			Env: env, Files: []*os.File{nil, os.Stdout, os.Stderr}})
		if p != nil {
			p.Wait()
		}
	case "child":
		sdNotify("READY=1")
		return 0
	}
	for s := range sigs {
		switch s {
		case syscall.SIGHUP:
			sdNotify("RELOADING=1")
			time.Sleep(200 * time.Millisecond)
			sdNotify("READY=1")
		case syscall.SIGTERM:
			sdNotify("STOPPING=1")
			return 0
		}
	}
	return 0
}

func notifyUnit(t *testing.T, root, name, mode, extra string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "/etc/systemd/system/"+name+".service", `[Service]
Type=notify
Environment=`+notifyHelper+`=`+mode+`
ExecStart=`+self+` -test.run=^$
ExecReload=/bin/kill -HUP $MAINPID
TimeoutStopSec=5
`+extra)
}

// A Type=notify service is active only once it says READY=1: systemctl
// start waits for it; STATUS= shows in systemctl status; a reload passes
// through reloading; a stop works as for any service.
func TestNotifyServiceStartsWhenReady(t *testing.T) {
	m, root := newTestManager(t)
	notifyUnit(t, root, "notified", "ready", "")
	start := time.Now()
	if code, _, errs := ctl(t, m, "start", "notified"); code != 0 {
		t.Fatalf("start: %d %s", code, errs)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("start returned after %s, before the service said READY=1", took)
	}
	if st := m.ActiveState("notified.service"); st != "active" {
		t.Fatalf("after READY=1: %s", st)
	}
	_, out, _ := ctl(t, m, "status", "notified")
	if !strings.Contains(out, `Status: "serving"`) {
		t.Errorf("status lacks the service's STATUS=:\n%s", out)
	}
	if code, _, errs := ctl(t, m, "reload", "notified"); code != 0 {
		t.Fatalf("reload: %d %s", code, errs)
	}
	eventually(t, "reloading", func() bool { return m.ActiveState("notified.service") == "reloading" })
	eventually(t, "active again after READY=1", func() bool { return m.ActiveState("notified.service") == "active" })
	if code, _, errs := ctl(t, m, "stop", "notified"); code != 0 || m.ActiveState("notified.service") != "inactive" {
		t.Fatalf("stop: %d %s, %s", code, errs, m.ActiveState("notified.service"))
	}
	if _, err := os.Stat(root + notifyDir + "/notified.service"); !os.IsNotExist(err) {
		t.Errorf("the notification socket is left after the stop: %v", err)
	}
}

// No READY=1 within TimeoutStartSec: the start fails with result
// timeout and the process is gone. READY=1 from another process than the
// main one does not count under NotifyAccess=main.
func TestNotifyServiceThatNeverGetsReady(t *testing.T) {
	m, root := newTestManager(t)
	notifyUnit(t, root, "silent", "never", "TimeoutStartSec=1\n")
	code, _, errs := ctl(t, m, "start", "silent")
	if code == 0 || !strings.Contains(errs, "timeout") {
		t.Fatalf("start of a service that never got ready: %d %q", code, errs)
	}
	_, show, _ := ctl(t, m, "show", "-p", "ActiveState", "--value", "silent.service")
	if m.ActiveState("silent.service") != "failed" {
		t.Fatalf("after the start timed out: %s %s", m.ActiveState("silent.service"), show)
	}

	notifyUnit(t, root, "impostor", "other", "TimeoutStartSec=2\n")
	code, _, _ = ctl(t, m, "start", "impostor")
	if code == 0 {
		t.Fatal("READY=1 from a child counted under NotifyAccess=main")
	}
	_, log, _ := ctl(t, m, "status", "impostor")
	if !strings.Contains(log, "reception only permitted for main PID") {
		t.Errorf("the refused notification is not in the journal:\n%s", log)
	}
	notifyUnit(t, root, "anyone", "other", "TimeoutStartSec=5\nNotifyAccess=all\n")
	if code, _, errs := ctl(t, m, "start", "anyone"); code != 0 {
		_, st, _ := ctl(t, m, "status", "anyone")
		t.Fatalf("NotifyAccess=all: %d %s\n%s", code, errs, st)
	}
}
