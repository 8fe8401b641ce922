package unitd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Type=notify, as systemd does it (sd_notify(3)): the service gets
// $NOTIFY_SOCKET, a datagram socket of the manager's, and the start job
// waits until the service says READY=1 — or its main process ends, or
// TimeoutStartSec= passes (then it is stopped and fails with result
// timeout). RELOADING=1 and STOPPING=1 show in its state, STATUS= in
// systemctl status. Under NotifyAccess=main (the default) a message
// counts only from the main process, checked by the sender's credentials
// (SO_PASSCRED), as systemd checks them.

// notifier is one run's notification socket.
type notifier struct {
	path  string
	conn  *net.UnixConn
	ready chan struct{} // closed at the first READY=1
	once  sync.Once
}

// notifyDir holds the sockets, under the manager's root.
const notifyDir = "/run/unitd/notify"

// openNotify makes the socket a run of s reports to.
func (m *Manager) openNotify(s *service) (*notifier, error) {
	dir := filepath.Join(m.Root, notifyDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("while making the notification socket: %w", err)
	}
	path := filepath.Join(dir, s.name)
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("while making the notification socket: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
		if err == nil {
			err = serr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("while asking for senders' credentials on the notification socket: %w", err)
	}
	n := &notifier{path: path, conn: conn, ready: make(chan struct{})}
	go m.readNotify(s, n)
	return n, nil
}

func (n *notifier) close() {
	n.conn.Close()
	os.Remove(n.path)
}

// readNotify applies the service's notifications until the socket closes.
func (m *Manager) readNotify(s *service, n *notifier) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		pid := senderPID(oob[:noob])
		if !m.notifyAllowed(s, pid) {
			continue
		}
		for _, line := range strings.Split(string(buf[:nb]), "\n") {
			m.applyNotification(s, n, line)
		}
	}
}

func senderPID(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, msg := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msg); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

// notifyAllowed applies NotifyAccess=. The main PID is known once the
// process is forked; a message sent at once may beat the manager there.
func (m *Manager) notifyAllowed(s *service, pid int) bool {
	m.mu.Lock()
	access := "main"
	if s.unit != nil && s.unit.NotifyAccess != "" {
		access = s.unit.NotifyAccess
	}
	m.mu.Unlock()
	switch access {
	case "all":
		return true
	case "none":
		m.note(s.name, fmt.Sprintf("Got notification message from PID %d, but reception is disabled (NotifyAccess=none).", pid))
		return false
	}
	for wait := 0; wait < 100; wait++ {
		m.mu.Lock()
		main := s.mainPID
		m.mu.Unlock()
		if main != 0 {
			if pid != main {
				m.note(s.name, fmt.Sprintf("Got notification message from PID %d, but reception only permitted for main PID %d", pid, main))
				return false
			}
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func (m *Manager) applyNotification(s *service, n *notifier, line string) {
	key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case key == "READY" && value == "1":
		n.once.Do(func() { close(n.ready) })
		if s.state == "reloading" {
			s.state, s.sub = "active", "running"
		}
	case key == "RELOADING" && value == "1":
		if s.state == "active" {
			s.state, s.sub = "reloading", "reload"
		}
	case key == "STOPPING" && value == "1":
		if s.state == "active" || s.state == "reloading" {
			s.state, s.sub = "deactivating", "stop"
		}
	case key == "STATUS":
		s.status = value
	}
}

// awaitReady waits for a notify service's READY=1 after its start. ok is
// false when it never came: the main process ended (mainExited handled
// it), or the start timed out (the service is then stopped, and fails).
func (m *Manager) awaitReady(s *service, n *notifier, exited <-chan struct{}, u *Unit, pid int) (ok bool, result string) {
	select {
	case <-n.ready:
		return true, ""
	case <-exited:
		return false, "exit-code"
	case <-time.After(u.TimeoutStart):
	}
	m.note(s.name, "start operation timed out. Terminating.")
	killGroup(pid, u.KillSignal)
	killGroup(pid, syscall.SIGCONT)
	select {
	case <-exited:
	case <-time.After(u.TimeoutStop):
		killGroup(pid, syscall.SIGKILL)
		<-exited
	}
	m.mu.Lock()
	if s.sub != "auto-restart" {
		s.state, s.sub, s.result = "failed", "failed", "timeout"
	}
	m.mu.Unlock()
	return false, "timeout"
}
