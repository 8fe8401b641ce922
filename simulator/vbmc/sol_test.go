package vbmc

// SOL through the real ipmitool to a unix socket the test serves the way
// QEMU serves a VM's serial port (in-memory machine; libvirt_test.go does
// it with a real VM).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// solSession is a running `ipmitool sol activate`.
type solSession struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *lockedBuffer
	done  chan struct{} // closed when ipmitool has exited
}

func (b *bmcUnderTest) solActivate(t *testing.T) *solSession {
	t.Helper()
	cmd := exec.Command(testenv.RequireCommand(t, "ipmitool"), b.ipmitoolArgs("sol", "activate")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &solSession{cmd: cmd, stdin: stdin, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// quit types ipmitool's escape sequence and waits for it to end.
func (s *solSession) quit(t *testing.T) {
	t.Helper()
	io.WriteString(s.stdin, "\r~.")
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("sol session did not end on ~.\n%s", s.out.String())
	}
}

func TestSOLBridgesTheSerialSocket(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	sock := filepath.Join(t.TempDir(), "serial.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	typed := make(chan string, 16)
	go func() {
		// Like QEMU's serial chardev: one client at a time; each gets the
		// output from then on and its keystrokes are echoed to the test.
		for conn := 1; ; conn++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "SeaBIOS (version test-serial)\r\nBooting from Hard Disk... (connection %d)\r\n", conn)
			r := bufio.NewReader(c)
			for {
				by, err := r.ReadByte()
				if err != nil {
					break
				}
				typed <- string(by)
			}
			c.Close()
		}
	}()

	b := startBMC(t, Config{Machine: newMemMachine(), ConsoleSocket: sock})
	s := b.solActivate(t)
	eventually(t, "console output through SOL", func() bool {
		return strings.Contains(s.out.String(), "Booting from Hard Disk... (connection 1)")
	})
	if !strings.Contains(s.out.String(), "SeaBIOS (version test-serial)") {
		t.Fatalf("SOL output lacks the first line:\n%s", s.out.String())
	}

	// A second session is refused while the first one is active.
	out, err := b.ipmitool(t, "sol", "activate")
	if err == nil || !strings.Contains(strings.ToLower(out), "already active") {
		t.Fatalf("second SOL session: err %v, output:\n%s", err, out)
	}

	// Keystrokes reach the serial port.
	io.WriteString(s.stdin, "k")
	select {
	case got := <-typed:
		if got != "k" {
			t.Fatalf("serial port got %q, want k", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("keystroke never reached the serial port")
	}
	s.quit(t)

	// After the first session ends, a new one is accepted.
	s2 := b.solActivate(t)
	// ipmitool flushes its banner only at exit, so the sign of a working
	// session is console output: the serial port's second client.
	eventually(t, "console output through the second session", func() bool {
		return strings.Contains(s2.out.String(), "(connection 2)")
	})
	s2.quit(t)
}
