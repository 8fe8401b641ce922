package testos

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSplitCommandContractLine(t *testing.T) {
	line := `/usr/bin/curl -fsS -X POST -H "Content-Type: application/json" --data-binary '{"mac":"00:11:22:33:44:10","event":"booted"}' http://172.24.213.1:8080/api/v1/events`
	cmd, err := SplitCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/curl", "-fsS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", `{"mac":"00:11:22:33:44:10","event":"booted"}`, "http://172.24.213.1:8080/api/v1/events"}
	if !reflect.DeepEqual(cmd.Argv, want) {
		t.Errorf("argv = %q\nwant %q", cmd.Argv, want)
	}
	cmd, err = SplitCommand(`-/bin/echo a\ b "c\"d" 100%% \n`)
	if err != nil {
		t.Fatal(err)
	}
	if !cmd.IgnoreFailed || !reflect.DeepEqual(cmd.Argv, []string{"/bin/echo", "a b", `c"d`, "100%", "\n"}) {
		t.Errorf("got %+v", cmd)
	}
	for _, bad := range []string{`/bin/echo "open`, "   ", "-"} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q) accepted it", bad)
		}
	}
}

func TestParseUnit(t *testing.T) {
	spec := ParseUnit("x.service", `[Unit]
Description=x
OnFailure=fail-a.service fail-b.service
[Service]
Type=oneshot
# a comment
ExecStartPre=/bin/pre
ExecStart=/bin/one \
  continued
ExecStart=/bin/two
ExecStartPost=/bin/post
[Install]
ExecStart=/not/a/service/key
`, "[Service]\nExecStart=\nExecStart=/bin/dropin\n")
	if !reflect.DeepEqual(spec.Pre, []string{"/bin/pre"}) || !reflect.DeepEqual(spec.Post, []string{"/bin/post"}) {
		t.Errorf("pre/post = %q / %q", spec.Pre, spec.Post)
	}
	if !reflect.DeepEqual(spec.Start, []string{"/bin/dropin"}) {
		t.Errorf("start = %q, want the drop-in to reset and replace ExecStart", spec.Start)
	}
	if !reflect.DeepEqual(spec.OnFailure, []string{"fail-a.service", "fail-b.service"}) {
		t.Errorf("OnFailure = %q", spec.OnFailure)
	}
	if got := ParseUnit("y", "[Service]\nExecStart=/bin/one \\\n  continued\n").Start; len(got) != 1 || !strings.HasPrefix(got[0], "/bin/one") || !strings.HasSuffix(got[0], "continued") {
		t.Errorf("continuation = %q", got)
	}
}

// writeUnits writes unit files under root as Apply would.
func writeUnits(t *testing.T, units map[string]string) string {
	root := t.TempDir()
	for name, text := range units {
		p := filepath.Join(root, unitDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(text), 0o644)
	}
	return root
}

func TestRunUnitsOrderAndOnFailure(t *testing.T) {
	root := writeUnits(t, map[string]string{
		"install.service": "[Unit]\nOnFailure=report.service\n[Service]\nExecStartPre=/bin/pre\nExecStart=-/bin/may-fail\nExecStart=/bin/fails\nExecStart=/bin/never\n",
		"after.service":   "[Service]\nExecStart=/bin/after\nExecStartPost=/bin/post\n",
		"report.service":  "[Service]\nExecStart=/bin/report failed\n",
		// A drop-in replaces the ExecStart list, as in systemd.
		"after.service.d/10-x.conf": "[Service]\nExecStartPost=\nExecStartPost=/bin/post2\n",
	})
	units := []string{"install.service", "after.service", "report.service", "empty.service"}
	var ran []string
	run := func(_ context.Context, argv []string) error {
		ran = append(ran, strings.Join(argv, " "))
		if argv[0] == "/bin/fails" || argv[0] == "/bin/may-fail" {
			return errors.New("exit status 1")
		}
		return nil
	}
	failed, wait := RunUnits(context.Background(), root, units, run, func(string) {})
	wait()
	want := []string{"/bin/pre", "/bin/may-fail", "/bin/fails", "/bin/report failed", "/bin/after", "/bin/post2", "/bin/report failed"}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q\nwant %q", ran, want)
	}
	if !reflect.DeepEqual(failed, []string{"install.service", "empty.service"}) {
		t.Errorf("failed = %q", failed)
	}
}

func TestRunUnitsRestartOnFailure(t *testing.T) {
	root := writeUnits(t, map[string]string{
		"booted.service": "[Unit]\nOnFailure=never.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/curl callback\nRestart=on-failure\nRestartSec=10ms\n",
		"next.service":   "[Service]\nExecStart=/bin/next\n",
	})
	units := []string{"booted.service", "next.service"}
	var mu sync.Mutex
	var ran []string
	calls := 0
	nextRan := make(chan struct{})
	run := func(_ context.Context, argv []string) error {
		mu.Lock()
		ran = append(ran, argv[0])
		if argv[0] == "/bin/next" {
			close(nextRan)
		}
		if argv[0] != "/usr/bin/curl" {
			mu.Unlock()
			return nil
		}
		calls++
		n := calls
		mu.Unlock()
		if n == 2 {
			// The restart waits for the next unit: were RunUnits to hold the
			// others up while it restarts one, this would never return.
			<-nextRan
		}
		if n < 3 {
			return errors.New("exit status 7")
		}
		return nil
	}
	failed, wait := RunUnits(context.Background(), root, units, run, func(string) {})
	wait()
	if len(failed) != 0 {
		t.Errorf("failed = %q, want none (restarted until it worked)", failed)
	}
	if calls != 3 || len(ran) != 4 {
		t.Errorf("ran %q: want curl three times and next once", ran)
	}
	for _, r := range ran {
		if r == "never" {
			t.Error("OnFailure ran for a restarting unit")
		}
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "5s": 5 * time.Second, "100ms": 100 * time.Millisecond, "2min 30s": 150 * time.Second, "1.5s": 1500 * time.Millisecond} {
		if got, err := parseTimespan(in); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTimespan("5 fortnights"); err == nil {
		t.Error("a bad unit was accepted")
	}
	if spec := ParseUnit("x", "[Service]\nRestart=on-failure\nRestartSec=5\n"); !spec.RestartOnFailure || spec.RestartSec != 5*time.Second {
		t.Errorf("spec = %+v", spec)
	}
}

func TestParseNetworkFile(t *testing.T) {
	n := ParseNetworkFile("00-internal.network", "# Racker\n[Match]\nMACAddress=00:11:22:33:44:AA\n\n[Network]\nDHCP=no\nAddress=172.24.213.10/24\nGateway=172.24.213.1\nDNS=1.1.1.1 9.9.9.9\n[Address]\nAddress=10.1.0.2/16\n[Route]\nGateway=_dhcp4\n")
	if n.Err != nil {
		t.Fatal(n.Err)
	}
	if len(n.Addresses) != 2 || n.Addresses[0].String() != "172.24.213.10/24" || n.Addresses[1].String() != "10.1.0.2/16" {
		t.Errorf("addresses = %v", n.Addresses)
	}
	if len(n.Gateways) != 1 || len(n.DNS) != 2 || n.KeepsDHCP() {
		t.Errorf("parsed %+v", n)
	}
	if !n.Matches("eth0", "00:11:22:33:44:aa") || n.Matches("eth0", "00:11:22:33:44:bb") {
		t.Error("MAC match is wrong (must ignore case, must not match another MAC)")
	}
	byName := ParseNetworkFile("x", "[Match]\nName=eth*\n[Network]\nDHCP=ipv4\n")
	if !byName.Matches("eth1", "x") || byName.Matches("ens3", "x") || !byName.KeepsDHCP() {
		t.Errorf("name match / DHCP: %+v", byName)
	}
	all := ParseNetworkFile("y", "[Network]\nAddress=10.0.0.1\n")
	if !all.Matches("anything", "00:00:00:00:00:01") || all.KeepsDHCP() || all.Addresses[0].String() != "10.0.0.1/32" {
		t.Errorf("a file without [Match] matches everything, DHCP defaults to no, a bare address is a /32: %+v", all)
	}
	// Invalid files say what and where, as networkd's log does.
	for text, want := range map[string]string{
		"[Network]\nAddress=300.1.1.1/24\n":               "z.network:2: invalid Address=300.1.1.1/24",
		"[Match]\nMACAddress=00:11\n[Network]\n":          "z.network:2: invalid MACAddress=00:11",
		"[Netwrok]\nDHCP=no\n":                            "z.network:1: unknown section [Netwrok]",
		"[Network]\nDHCP=maybe\n":                         "z.network:2: invalid DHCP=maybe",
		"[Network]\nAddress 10.0.0.1/8\n":                 "z.network:2: missing '='",
		"DHCP=no\n":                                       "z.network:1: assignment DHCP= outside of a section",
		"[Network]\nGateway=\\\n  1.2.3.x\nDNS=1.1.1.1\n": "z.network:2: invalid Gateway",
	} {
		if f := ParseNetworkFile("z.network", text); f.Err == nil || !strings.Contains(f.Err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, f.Err, want)
		}
	}
}

// PlanLink is networkd's decision per link: the first matching file wins,
// DHCP=no means no DHCP client, an invalid file fails its link, and links
// no file claims get Flatcar's default DHCP.
func TestPlanLink(t *testing.T) {
	const mac0, mac1 = "52:54:00:00:00:01", "52:54:00:00:00:02"
	files := []NetworkFile{
		ParseNetworkFile("00-internal.network", "[Match]\nMACAddress="+mac0+"\n[Network]\nDHCP=no\nAddress=172.24.213.10/24\n"),
		ParseNetworkFile("10-all.network", "[Match]\nName=eth*\n[Network]\nDHCP=yes\n"),
	}
	if p := PlanLink(files, "eth0", mac0); p.File != "00-internal.network" || p.DHCP || len(p.Addresses) != 1 || p.Err != nil {
		t.Errorf("eth0: %+v (DHCP=no: static only)", p)
	}
	if p := PlanLink(files, "eth1", mac1); p.File != "10-all.network" || !p.DHCP {
		t.Errorf("eth1: %+v", p)
	}
	if p := PlanLink(files[:1], "eth1", mac1); p.File != "" || !p.DHCP {
		t.Errorf("unclaimed link: %+v, want Flatcar's default DHCP", p)
	}
	broken := []NetworkFile{ParseNetworkFile("00-internal.network", "[Match]\nMACAddress="+mac0+"\n[Network]\nDHCP=no\nAddress=172.24.213.300/24\n"), files[1]}
	if p := PlanLink(broken, "eth0", mac0); p.Err == nil || p.DHCP || len(p.Addresses) != 0 {
		t.Errorf("invalid file: %+v, want a failed link with no DHCP and no address", p)
	}
	if p := PlanLink(broken, "eth1", mac1); p.Err != nil || !p.DHCP {
		t.Errorf("a broken file for another MAC must not touch eth1: %+v", p)
	}
	badMatch := []NetworkFile{ParseNetworkFile("00-x.network", "[Match]\nMACAddress=nonsense\n[Network]\nDHCP=yes\n")}
	if p := PlanLink(badMatch, "eth1", mac1); p.Err == nil {
		t.Errorf("a file whose [Match] is unreadable must fail every link: %+v", p)
	}
}
