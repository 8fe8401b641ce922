package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// planHosts runs racker plan -o json and returns hostname and address by
// primary MAC.
func planHosts(t *testing.T, args ...string) (code int, hosts map[string]string, ips map[string]string, stderr string) {
	t.Helper()
	code, out, errs := run(t, "", append([]string{"plan", "-o", "json"}, args...)...)
	if code != 0 {
		return code, nil, nil, errs
	}
	var doc struct {
		Nodes []struct {
			PrimaryMAC string `json:"primary_mac"`
			Hostname   string `json:"hostname"`
			IP         string `json:"ip"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, out)
	}
	hosts, ips = map[string]string{}, map[string]string{}
	for _, n := range doc.Nodes {
		hosts[n.PrimaryMAC], ips[n.PrimaryMAC] = n.Hostname, n.IP
	}
	return code, hosts, ips, errs
}

// The bug of issue 16: a rack planned with --cluster-name prod got racker-*
// hostnames from the next command without the flag (racker serve's unit
// passes none), and a non-default --subnet moved every address back.
func TestPlanRemembersClusterNameAndSubnet(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	const ctrl = "00:11:22:33:44:10"

	code, hosts, _, errs := planHosts(t, append([]string{"--cluster-name", "prod"}, flags...)...)
	if code != 0 || hosts[ctrl] != "prod-controller-0" {
		t.Fatalf("plan --cluster-name prod: exit %d, %v %s", code, hosts, errs)
	}
	code, hosts, _, errs = planHosts(t, flags...)
	if code != 0 || hosts[ctrl] != "prod-controller-0" {
		t.Fatalf("plan without flags after --cluster-name prod: exit %d, controller %q, want prod-controller-0 (%s)", code, hosts[ctrl], errs)
	}

	oem2, state2 := exampleRack(t)
	flags2 := rackFlags(oem2, state2)
	code, _, ips, errs := planHosts(t, append([]string{"--subnet", "10.9.0.0/24"}, flags2...)...)
	if code != 0 || !strings.HasPrefix(ips[ctrl], "10.9.0.") {
		t.Fatalf("plan --subnet 10.9.0.0/24: exit %d, %v %s", code, ips, errs)
	}
	first := ips[ctrl]
	code, _, ips, errs = planHosts(t, flags2...)
	if code != 0 || ips[ctrl] != first {
		t.Fatalf("plan without flags after --subnet 10.9.0.0/24: exit %d, controller at %q, want %s (%s)", code, ips[ctrl], first, errs)
	}
	// Every other command reads the same choices: status shows the names.
	code, out, errs := run(t, "", append([]string{"status"}, flags...)...)
	if code != 0 || !strings.Contains(out, "prod-controller-0") {
		t.Fatalf("status after --cluster-name prod: exit %d\n%s%s", code, out, errs)
	}
}

// A flag that contradicts a saved choice is refused, naming both values
// and --replan; repeating the saved value is fine.
func TestPlanRefusesContradictingFlags(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	if code, _, _, errs := planHosts(t, append([]string{"--cluster-name", "prod", "--subnet", "10.9.0.0/24"}, flags...)...); code != 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--cluster-name", "staging"}, []string{"--cluster-name staging", "prod", "--replan"}},
		{[]string{"--subnet", "10.8.0.0/24"}, []string{"--subnet 10.8.0.0/24", "10.9.0.0/24", "--replan"}},
		{[]string{"--cluster-name", "racker"}, []string{"--cluster-name racker", "prod", "--replan"}},
		{[]string{"--controllers", "3"}, []string{"--controllers 3", "1", "--replan"}},
	} {
		code, _, _, errs := planHosts(t, append(tc.args, flags...)...)
		if code == 0 {
			t.Errorf("plan %v after prod/10.9.0.0/24: accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("plan %v: error lacks %q:\n%s", tc.args, w, errs)
			}
		}
	}
	// The same value again, spelled differently, is no contradiction.
	if code, hosts, _, errs := planHosts(t, append([]string{"--cluster-name", "prod", "--subnet", "10.9.0.7/24"}, flags...)...); code != 0 || hosts["00:11:22:33:44:10"] != "prod-controller-0" {
		t.Fatalf("repeating the saved choices: exit %d %v %s", code, hosts, errs)
	}
	// Bootstrap's answers contradict the same way, before any node is touched.
	code, _, errs := run(t, "", append([]string{"bootstrap", "--cluster-name", "staging", "--bmc-driver", "fake"}, flags...)...)
	if code == 0 || !strings.Contains(errs, "--replan") || !strings.Contains(errs, "prod") {
		t.Fatalf("bootstrap --cluster-name staging: exit %d %s", code, errs)
	}
}

// --replan shows what changes and asks (a terminal) or takes --yes; the
// plan is renamed and renumbered only then.
func TestReplanShowsTheDiffAndAsks(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	if code, _, _, errs := planHosts(t, append([]string{"--cluster-name", "prod"}, flags...)...); code != 0 {
		t.Fatal(errs)
	}
	replan := append([]string{"plan", "--replan", "--cluster-name", "staging", "--subnet", "10.9.0.0/24"}, flags...)

	// No terminal, no --yes: refused, nothing changed.
	code, _, errs := run(t, "", replan...)
	if code == 0 || !strings.Contains(errs, "--yes") {
		t.Fatalf("--replan without a terminal or --yes: exit %d %s", code, errs)
	}
	// A terminal, answered no: the diff, then nothing changed.
	out, errs, code := runTerminal(t, "n\n", replan...)
	for _, w := range []string{"cluster-name: prod → staging", "subnet: 172.24.213.0/24 → 10.9.0.0/24",
		"prod-controller-0 → staging-controller-0", "172.24.213.2 → 10.9.0.2"} {
		if !strings.Contains(out, w) {
			t.Errorf("--replan diff lacks %q:\n%s", w, out)
		}
	}
	if code == 0 {
		t.Errorf("--replan answered no: exit 0 (%s)", errs)
	}
	if _, hosts, _, _ := planHosts(t, flags...); hosts["00:11:22:33:44:10"] != "prod-controller-0" {
		t.Fatalf("--replan answered no changed the plan: %v", hosts)
	}
	// Answered yes: renamed and renumbered, and remembered.
	if out, errs, code := runTerminal(t, "y\n", replan...); code != 0 {
		t.Fatalf("--replan answered yes: exit %d\n%s%s", code, out, errs)
	}
	_, hosts, ips, _ := planHosts(t, flags...)
	if hosts["00:11:22:33:44:10"] != "staging-controller-0" || !strings.HasPrefix(ips["00:11:22:33:44:10"], "10.9.0.") {
		t.Fatalf("after --replan: %v %v", hosts, ips)
	}
	// --yes without a terminal; and back to the first subnet keeps the
	// addresses held there.
	code, out2, errs := run(t, "", append([]string{"plan", "--replan", "--yes", "--subnet", "172.24.213.0/24"}, flags...)...)
	if code != 0 || !strings.Contains(out2, "10.9.0.0/24 → 172.24.213.0/24") {
		t.Fatalf("--replan --yes: exit %d\n%s%s", code, out2, errs)
	}
	if _, _, ips, _ := planHosts(t, flags...); ips["00:11:22:33:44:10"] != "172.24.213.2" {
		t.Fatalf("back on the first subnet: %v", ips)
	}
}

// A plan.json of the previous release (addresses and hostnames, no
// choices) migrates: the cluster name and subnet it was planned with are
// read from it, so the first command of the new release keeps them.
func TestPlanMigratesTheVersion1File(t *testing.T) {
	oem, state := exampleRack(t)
	os.MkdirAll(state, 0o755)
	old := `{
  "addresses": {"10.9.0.0/24": {"00:11:22:33:44:30": "10.9.0.1", "00:11:22:33:44:10": "10.9.0.2", "00:11:22:33:44:11": "10.9.0.3",
                                "00:11:22:33:44:20": "10.9.0.4", "00:11:22:33:44:21": "10.9.0.5"}},
  "hostnames": {"00:11:22:33:44:10": "prod-controller-0", "00:11:22:33:44:20": "prod-worker-0"}
}
`
	if err := os.WriteFile(filepath.Join(state, "plan.json"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	code, hosts, ips, errs := planHosts(t, rackFlags(oem, state)...)
	if code != 0 || hosts["00:11:22:33:44:20"] != "prod-worker-0" || ips["00:11:22:33:44:20"] != "10.9.0.4" {
		t.Fatalf("plan over a version-1 plan.json: exit %d %v %v %s", code, hosts, ips, errs)
	}
	b, _ := os.ReadFile(filepath.Join(state, "plan.json"))
	var doc struct {
		Version int               `json:"version"`
		Choices map[string]string `json:"choices"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Version != 2 || doc.Choices["cluster-name"] != "prod" || doc.Choices["subnet"] != "10.9.0.0/24" {
		t.Fatalf("migrated plan.json: %v\n%s", err, b)
	}
}

// runTerminal runs racker in-process as if on a terminal, with stdin's
// answers.
func runTerminal(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb strings.Builder
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, IsTerminal: func() bool { return true }}
	code = env.Run(t.Context(), args)
	return out.String(), errb.String(), code
}
