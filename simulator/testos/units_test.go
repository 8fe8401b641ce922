package testos

import (
	"context"
	"errors"
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

func TestRunUnitsOrderAndOnFailure(t *testing.T) {
	str := func(s string) *string { return &s }
	units := []Unit{
		{Name: "install.service", Contents: str("[Unit]\nOnFailure=report.service\n[Service]\nExecStartPre=/bin/pre\nExecStart=-/bin/may-fail\nExecStart=/bin/fails\nExecStart=/bin/never\n")},
		{Name: "after.service", Contents: str("[Service]\nExecStart=/bin/after\nExecStartPost=/bin/post\n")},
		{Name: "report.service", Contents: str("[Service]\nExecStart=/bin/report failed\n")},
		{Name: "empty.service"},
	}
	var ran []string
	run := func(_ context.Context, argv []string) error {
		ran = append(ran, strings.Join(argv, " "))
		if argv[0] == "/bin/fails" || argv[0] == "/bin/may-fail" {
			return errors.New("exit status 1")
		}
		return nil
	}
	failed, wait := RunUnits(context.Background(), t.TempDir(), units, run, func(string) {})
	wait()
	want := []string{"/bin/pre", "/bin/may-fail", "/bin/fails", "/bin/report failed", "/bin/after", "/bin/post", "/bin/report failed"}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q\nwant %q", ran, want)
	}
	if !reflect.DeepEqual(failed, []string{"install.service", "empty.service"}) {
		t.Errorf("failed = %q", failed)
	}
}

func TestRunUnitsRestartOnFailure(t *testing.T) {
	str := func(s string) *string { return &s }
	units := []Unit{
		{Name: "booted.service", Contents: str("[Unit]\nOnFailure=never.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/curl callback\nRestart=on-failure\nRestartSec=10ms\n")},
		{Name: "next.service", Contents: str("[Service]\nExecStart=/bin/next\n")},
	}
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
	failed, wait := RunUnits(context.Background(), t.TempDir(), units, run, func(string) {})
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
	n, err := ParseNetworkFile("00-internal.network", "# Racker\n[Match]\nMACAddress=00:11:22:33:44:AA\n\n[Network]\nDHCP=no\nAddress=172.24.213.10/24\nGateway=172.24.213.1\nDNS=1.1.1.1 9.9.9.9\n[Address]\nAddress=10.1.0.2/16\n")
	if err != nil {
		t.Fatal(err)
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
	byName, _ := ParseNetworkFile("x", "[Match]\nName=eth*\n[Network]\nDHCP=ipv4\n")
	if !byName.Matches("eth1", "x") || byName.Matches("ens3", "x") || !byName.KeepsDHCP() {
		t.Errorf("name match / DHCP: %+v", byName)
	}
	all, _ := ParseNetworkFile("y", "[Network]\nAddress=10.0.0.1/8\n")
	if !all.Matches("anything", "00:00:00:00:00:01") || all.KeepsDHCP() {
		t.Error("a file without [Match] matches everything and DHCP defaults to no")
	}
	if _, err := ParseNetworkFile("z", "[Network]\nAddress=300.1.1.1/24\n"); err == nil {
		t.Error("a bad address was accepted")
	}
}
