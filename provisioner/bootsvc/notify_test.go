package bootsvc_test

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// racker serve under a service manager (its unit is Type=notify): READY=1
// once the sockets are open, RELOADING=1 then READY=1 around a SIGHUP,
// STOPPING=1 on SIGTERM — read here from the $NOTIFY_SOCKET datagram
// socket systemd would hold.
func TestServeNotifiesTheServiceManager(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case m := <-got:
				if strings.HasPrefix(m, "STATUS=") {
					continue // progress for systemctl status
				}
				if !strings.HasPrefix(m, want) {
					t.Fatalf("notification %q, want %s", m, want)
				}
				return m
			case <-time.After(30 * time.Second):
				t.Fatalf("no %s notification", want)
			}
		}
	}
	n := newTestNet(t)
	r := newRack(t, n, node1)
	s := serve(t, n, r)
	if m := next("READY=1"); !strings.Contains(m, "STATUS=serving DHCP, TFTP and HTTP on ") {
		t.Errorf("READY without a status: %q", m)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING without its time: %q", m)
	}
	next("READY=1")
	s.stop(t)
	next("STOPPING=1")
}
