package bootsvc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/netenv"
)

// TestFactoryDiscoverListsMACsWithoutAnswering: `racker factory discover`
// in the server namespace hears a PXE client and a BMC-like client, prints
// them as draft nodes.csv rows, and answers neither.
func TestFactoryDiscoverListsMACsWithoutAnswering(t *testing.T) {
	n := newTestNet(t)
	if err := netenv.SetLinkUp(n.srvNS, n.srvIf, true); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, errOut := filepath.Join(dir, "draft.csv"), filepath.Join(dir, "stderr")
	fo, _ := os.Create(out)
	fe, _ := os.Create(errOut)
	// ip netns exec execs racker in place, so a signal reaches it directly.
	cmd := netenv.Command(context.Background(), n.srvNS, self, "factory", "discover", "--pxe-interface", n.srvIf, "--duration", "10m")
	cmd.Env = append(os.Environ(), asRacker+"=1")
	cmd.Stdout, cmd.Stderr = fo, fe
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fo.Close()
	fe.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	logText := func() string { b, _ := os.ReadFile(errOut); return string(b) }
	// Wait until it listens: it logs that after the socket is open.
	for !strings.Contains(logText(), "listening for DHCP requests") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("discover exited (%v): %s", err, logText())
		case <-time.After(50 * time.Millisecond):
		}
	}

	n.setClientMAC(t, "02:dd:00:00:00:01")
	if v := udhcpc(t, n, "-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"); len(v) != 0 {
		t.Fatalf("discover answered: %v", v)
	}
	n.setClientMAC(t, "02:dd:00:00:00:02")
	udhcpc(t, n, "-V", "ACME-BMC 1.0")
	cmd.Process.Signal(syscall.SIGINT) // stop listening, print the draft
	if err := <-done; err != nil {
		done <- err
		t.Fatalf("discover: %v\n%s", err, logText())
	}
	done <- nil
	b, _ := os.ReadFile(out)
	draft := string(b)
	if !strings.Contains(draft, "Primary MAC address, BMC MAC address") {
		t.Errorf("no nodes.csv header:\n%s", draft)
	}
	if !strings.Contains(draft, "\n02:dd:00:00:00:01, , , default, netboot firmware: vendor class PXEClient:Arch:00007:UNDI:003000; arch 7") {
		t.Errorf("the PXE client is not a primary MAC row:\n%s", draft)
	}
	if !strings.Contains(draft, "\n, 02:dd:00:00:00:02, , default, not netboot (a BMC?): vendor class ACME-BMC 1.0") {
		t.Errorf("the other client is not a BMC MAC row:\n%s", draft)
	}
}
