package bmc

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// Debian's ipmitool, an independent client, reads back what Racker wrote:
// the exact parameter-5 bytes (the persistent+EFI combination ipmitool
// itself cannot send).
func TestIpmitoolReadsTheBootBytesRackerWrote(t *testing.T) {
	ipmitool := testenv.RequireCommand(t, "ipmitool")
	tb := startGoIPMI(t, false)
	c := openTest(t, "ipmi://"+tb.addr, testOpts(t, nil))
	if v, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE, Persistent: true, EFI: true}); err != nil || !v {
		t.Fatalf("SetBoot = %v, %v", v, err)
	}

	host, port, _ := net.SplitHostPort(tb.addr)
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	get := func(param string) string {
		t.Helper()
		// The password goes by file (-f), never on the command line.
		out, err := exec.Command(ipmitool, "-I", "lanplus", "-C", "17", "-H", host, "-p", port, "-U", testUser, "-f", pw,
			"chassis", "bootparam", "get", param).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool bootparam get %s: %v\n%s", param, err, out)
		}
		return string(out)
	}
	if out := get("5"); !strings.Contains(out, "Boot parameter data: e004000000") {
		t.Fatalf("ipmitool reads parameter 5 as:\n%s\nwant data e004000000", out)
	}
}
