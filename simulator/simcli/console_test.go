package simcli

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A console attached while the VM is still starting (its BMC answered
// power on first) waits for the serial socket instead of failing; one that
// never comes is an error after the wait.
func TestConsoleWaitsForTheSocketOfAStartingVM(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "console.sock")
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { ln.Close() })
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("testos: hello\n"))
			c.Close()
		}
	}()
	waited := 0
	conn, err := dialConsole(context.Background(), sock, 10*time.Second, func() { waited++ })
	if err != nil {
		t.Fatalf("the console did not wait for the socket: %v", err)
	}
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	conn.Close()
	if string(buf[:n]) != "testos: hello\n" || waited != 1 {
		t.Errorf("read %q, said it was waiting %d times (want once)", buf[:n], waited)
	}

	start := time.Now()
	if _, err := dialConsole(context.Background(), filepath.Join(t.TempDir(), "never"), time.Second, func() {}); err == nil {
		t.Error("a socket that never appears: no error")
	} else if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Errorf("gave up after %v, want about 1 s", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dialConsole(ctx, filepath.Join(t.TempDir(), "never"), time.Minute, func() {}); err == nil {
		t.Error("a cancelled wait: no error")
	}
}
