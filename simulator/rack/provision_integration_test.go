package rack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/simulator/rack"
)

type event struct {
	Seq     int    `json:"seq"`
	MAC     string `json:"mac"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// TestRackProvisionsNodesByHand shows the whole simulated path before any
// orchestrator: boot windows opened and boot flags set by hand (curl and
// ipmitool from the management node), the servers PXE-boot from racker serve into the test OS, n1
// installs to disk, reboots (the vBMC restarts it) and calls back booted
// from disk (SeaBIOS); n2 (UEFI: OVMF, efiboot flag) carries the
// install-fail fault and reports failed. The
// assertions are on the events racker serve recorded and on n1's console.
func TestRackProvisionsNodesByHand(t *testing.T) {
	cfg := requireRack(t)
	testenv.RequireFile(t, filepath.Join(cfg.TestOSDir, "current", "flatcar_production_image.bin.bz2")) // make testos
	cfg.Nodes, cfg.Types, cfg.UEFITypes = 2, []string{"legacy", "efi"}, []string{"efi"}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx := context.Background()
	s, _ := upForTest(t, "rp", cfg, log)
	if out, err := inMgmt(t, s, "racker factory gen-ssh-key"); err != nil {
		t.Fatalf("gen-ssh-key: %v\n%s", err, out)
	}
	if err := rack.Fault(ctx, s, "n2", rack.FaultInstallFail, nil); err != nil {
		t.Fatal(err)
	}
	mgmtIP := ""
	for i := 0; i < 300 && mgmtIP == ""; i++ {
		out, _ := inMgmt(t, s, "ip -4 -o addr show "+rack.MgmtSecondaryIface)
		if f := strings.Fields(out); len(f) >= 4 {
			mgmtIP = strings.Split(f[3], "/")[0]
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if mgmtIP == "" {
		t.Fatal("racker serve never put an address on the management node's internal NIC")
	}

	// Open both nodes' boot windows, as Racker does before it netboots a
	// node (racker serve serves install configs only in a window).
	for _, m := range s.Machines[1:3] {
		url := fmt.Sprintf("http://%s:8080/api/v1/nodes/%s/netboot", mgmtIP, m.PrimaryMAC)
		if out, err := inMgmt(t, s, "curl -fsS -X POST "+url); err != nil {
			t.Fatalf("opening the boot window of %s: %v\n%s", m.PrimaryMAC, err, out)
		}
	}
	// Boot both from the network once, by hand, through their vBMCs, with
	// ipmitool on the management network.
	password, err := os.ReadFile(filepath.Join(s.OEMDir(), "ipmi_password"))
	if err != nil {
		t.Fatal(err)
	}
	for n, opts := range map[string][]string{"n1": nil, "n2": {"options=efiboot"}} {
		ip := waitBMCAddr(t, s, n)
		env := []string{"IPMI_PASSWORD=" + strings.TrimSpace(string(password))}
		ipmi := []string{"ipmitool", "-I", "lanplus", "-C", "17", "-H", ip, "-U", "racker", "-E"}
		if out, err := onMgmtNet(t, s, env, append(append(ipmi, "chassis", "bootdev", "pxe"), opts...)...); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
		if out, err := onMgmtNet(t, s, env, append(ipmi, "power", "on")...); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
	}
	// The console of n1 shows the test OS at work.
	console := simCmd(ctx, s, "console", "n1")
	stdin, _ := console.StdinPipe()
	stdout, _ := console.StdoutPipe()
	if err := console.Start(); err != nil {
		t.Fatal(err)
	}
	sawConsole := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "testos:") {
				sawConsole <- true
				return
			}
		}
		sawConsole <- false
	}()
	t.Cleanup(func() { stdin.Close(); console.Process.Kill(); console.Wait() })

	n1, n2 := s.Machines[1].PrimaryMAC, s.Machines[2].PrimaryMAC
	kinds := map[string][]string{}
	after := 0
	deadline := time.Now().Add(8 * time.Minute) // a bound for a broken rack, not a speed goal
	start := time.Now()
	var n1Booted, n2Failed time.Duration
	for time.Now().Before(deadline) && (n1Booted == 0 || n2Failed == 0) {
		out, err := inMgmt(t, s, fmt.Sprintf("curl -fsS 'http://%s:8080/api/v1/events?after=%d&wait=20s'", mgmtIP, after))
		if err != nil {
			t.Fatalf("events: %v\n%s", err, out)
		}
		var page struct{ Events []event }
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("events answer: %v\n%s", err, out)
		}
		for _, e := range page.Events {
			after = e.Seq
			kinds[e.MAC] = append(kinds[e.MAC], e.Kind+":"+e.Message)
			switch {
			case e.MAC == n1 && e.Kind == "booted":
				n1Booted = time.Since(start)
			case e.MAC == n2 && e.Kind == "failed":
				n2Failed = time.Since(start)
			}
		}
	}
	t.Logf("n1 events: %v", kinds[n1])
	t.Logf("n2 events: %v", kinds[n2])
	if n1Booted == 0 || n2Failed == 0 {
		c1, _ := os.ReadFile(s.ConsoleLog("n1"))
		t.Fatalf("n1 booted=%v n2 failed=%v; n1 console tail:\n%s", n1Booted, n2Failed, tail(c1, 3000))
	}
	t.Logf("FIGURE: power-on to booted from disk (n1) %.1f s; to failed install (n2) %.1f s", n1Booted.Seconds(), n2Failed.Seconds())
	assertOrder(t, "n1", kinds[n1], "ipxe:install", "installing:", "installed:", "ignition:boot", "booted:")
	// The guest's own reboot after the install went to disk: the next-boot
	// PXE flag was spent, so no second install (no netboot loop).
	installed := false
	for _, k := range kinds[n1] {
		installed = installed || strings.HasPrefix(k, "installed")
		if installed && (strings.HasPrefix(k, "ipxe:install") || strings.HasPrefix(k, "ignition:install")) {
			t.Errorf("n1 netbooted into the installer again after installing: %v", kinds[n1])
		}
	}
	if !strings.Contains(strings.Join(kinds[n2], " "), "arch=7") {
		t.Errorf("n2 did not PXE-boot as x86-64 UEFI (DHCP arch 7): %v", kinds[n2])
	}
	for _, k := range kinds[n2] {
		if strings.HasPrefix(k, "installed") {
			t.Errorf("n2 installed despite install-fail: %v", kinds[n2])
		}
	}
	select {
	case ok := <-sawConsole:
		if !ok {
			t.Error("racker-sim console n1 ended without showing the test OS")
		}
	case <-time.After(10 * time.Second):
		t.Error("racker-sim console n1 showed no testos: line although n1 booted twice")
	}
}

func waitBMCAddr(t *testing.T, s *rack.State, node string) string {
	t.Helper()
	for i := 0; i < 600; i++ {
		if b, err := os.ReadFile(s.BMCAddrFile(node)); err == nil {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the vBMC of %s got no address", node)
	return ""
}

// assertOrder checks that want appear in events in this order (prefixes).
func assertOrder(t *testing.T, node string, events []string, want ...string) {
	t.Helper()
	i := 0
	for _, e := range events {
		if i < len(want) && strings.HasPrefix(e, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("%s: events %v lack %q in order", node, events, want[i:])
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
