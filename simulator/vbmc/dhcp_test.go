package vbmc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
)

func TestGuestEventOf(t *testing.T) {
	for _, tc := range []struct {
		name, details string
		want          GuestEvent
		ok            bool
	}{
		{"SHUTDOWN", `{"guest":true,"reason":"guest-reset"}`, GuestReset, true},
		{"SHUTDOWN", `{"guest":true,"reason":"guest-shutdown"}`, GuestPowerOff, true},
		{"SHUTDOWN", `{"guest":false,"reason":"host-signal"}`, 0, false},
		{"RESET", `{"guest":true,"reason":"guest-reset"}`, 0, false},
		{"SHUTDOWN", `not json`, 0, false},
	} {
		got, ok := guestEventOf(tc.name, []byte(tc.details))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s %s = %v %v, want %v %v", tc.name, tc.details, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHelperVBMC is not a test: it is the virtual BMC process the DHCP test
// starts inside the BMC's network namespace (like `racker-sim vbmc`), over
// an in-memory machine.
func TestHelperVBMC(t *testing.T) {
	iface := os.Getenv("VBMC_HELPER_IFACE")
	if iface == "" {
		t.Skip("helper process for TestDHCPThenIPMIInANamespace")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := Run(ctx, Config{
		Name: "dhcp-node", Machine: newMemMachine(), Interface: iface,
		UserFile: os.Getenv("VBMC_HELPER_USER"), PasswordFile: os.Getenv("VBMC_HELPER_PASS"),
		Logger:   testLogger(t),
		OnListen: func(a netip.AddrPort) { fmt.Printf("LISTEN %s\n", a) },
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDHCPThenIPMIInANamespace: a BMC namespace and a server namespace
// joined by a veth; the BMC starts first and keeps asking until dnsmasq
// comes up, takes its fixed lease, renews it, and answers ipmitool there.
func TestDHCPThenIPMIInANamespace(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ipmitool")
	dnsmasq := testenv.RequireCommand(t, "dnsmasq")
	sfx := uniqueSuffix()
	srvNS, bmcNS := "vbs"+sfx, "vbc"+sfx
	srvIf, bmcIf := srvNS+"a", bmcNS+"a"
	const bmcMAC, bmcIP = "02:00:00:aa:bb:cc", "10.213.0.57"

	testenv.RequireCommand(t, "ip") // netenv.Command runs `ip netns exec`
	// The two namespaces meet on a bridge of their own, with no address.
	mac, _ := net.ParseMAC(bmcMAC)
	br := "vbb" + sfx
	netenv.ForTest(t, netenv.Topology{
		Bridges:    []netenv.Bridge{{Name: br}},
		Namespaces: []string{srvNS, bmcNS},
		Veths: []netenv.Veth{
			{Host: "vbhs" + sfx, Bridge: br, Peer: srvIf, Namespace: srvNS, Addresses: []netip.Prefix{netip.MustParsePrefix("10.213.0.1/24")}},
			{Host: "vbhc" + sfx, Bridge: br, Peer: bmcIf, Namespace: bmcNS, MAC: mac},
		},
	})

	dir := t.TempDir()
	userFile, passFile := writeCredentials(t, dir)

	// The BMC first, with no DHCP server on its network yet.
	bmc := netenv.Command(context.Background(), bmcNS, os.Args[0], "-test.run=^TestHelperVBMC$", "-test.v")
	bmc.Env = append(os.Environ(), "VBMC_HELPER_IFACE="+bmcIf, "VBMC_HELPER_USER="+userFile, "VBMC_HELPER_PASS="+passFile)
	stdout, err := bmc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	bmcLog := &lockedBuffer{}
	bmc.Stderr = bmcLog
	if err := bmc.Start(); err != nil {
		t.Fatal(err)
	}
	bmcDone := make(chan struct{})
	listens := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			bmcLog.Write([]byte(line + "\n"))
			if a, ok := strings.CutPrefix(line, "LISTEN "); ok {
				listens <- a
			}
		}
		bmc.Wait()
		close(bmcDone)
	}()
	t.Cleanup(func() {
		bmc.Process.Signal(syscall.SIGTERM)
		select {
		case <-bmcDone:
		case <-time.After(20 * time.Second):
			bmc.Process.Kill()
			<-bmcDone
		}
		if t.Failed() {
			t.Logf("BMC process output:\n%s", bmcLog.String())
		}
	})
	eventually(t, "the BMC asking for an address while no server answers", func() bool {
		return strings.Contains(bmcLog.String(), "no DHCP lease yet")
	})

	// Now the DHCP server, with the BMC's planned address, as Racker does.
	srvLog := &lockedBuffer{}
	srv := netenv.Command(context.Background(), srvNS, dnsmasq, "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--user=root", "--group=root", "--bind-interfaces", "--interface="+srvIf, "--except-interface=lo",
		"--dhcp-range=10.213.0.50,10.213.0.60,255.255.255.0,2m", "--dhcp-host="+bmcMAC+","+bmcIP,
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--log-dhcp")
	srv.Stdout, srv.Stderr = srvLog, srvLog
	serverUp := time.Now()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		<-srvDone
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", srvLog.String())
		}
	})

	var listen string
	select {
	case listen = <-listens:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the BMC never got a lease\nBMC:\n%s\ndnsmasq:\n%s", bmcLog.String(), srvLog.String())
	}
	// A figure, not an assertion: how long a BMC that was retrying takes to
	// answer once a DHCP server is there (bounded by the retry backoff).
	t.Logf("BMC listening on %s %v after the DHCP server started", listen, time.Since(serverUp).Round(time.Millisecond))
	if want := bmcIP + ":623"; listen != want {
		t.Fatalf("BMC listens on %s, want %s", listen, want)
	}
	b := &bmcUnderTest{addr: netip.MustParseAddrPort(listen), passFile: passFile, dir: dir, netns: srvNS}
	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("power status over the namespace = %q", got)
	}
	out := b.mustIPMI(t, "lan", "print", "1")
	if !strings.Contains(out, bmcIP) || !strings.Contains(strings.ToLower(out), bmcMAC) {
		t.Fatalf("lan print does not show the leased address and the BMC MAC:\n%s", out)
	}

	// The lease is 2 minutes: the BMC renews it at T1 with the same server.
	if testing.Short() {
		t.Log("-short: not waiting a minute for the renewal")
		return
	}
	eventually(t, "a renewal (second DHCPACK)", func() bool {
		return strings.Count(srvLog.String(), "DHCPACK("+srvIf+") "+bmcIP+" "+bmcMAC) >= 2
	})
	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("power status after the renewal = %q", got)
	}
}
