package cli

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Every command's help has examples, hidden ones included.
func TestEveryCommandHasExamples(t *testing.T) {
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	var walk func(*cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("racker %s has no Example", strings.TrimPrefix(c.CommandPath(), "racker "))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 25 {
		t.Errorf("only %d commands walked", n)
	}
	code, out, _ := run(t, "", "describe", "--help")
	if code != 0 || !strings.Contains(out, "Examples:\n  racker describe racker-worker-0") {
		t.Errorf("describe --help: exit %d\n%s", code, out)
	}
}

// A command line racker cannot run points to the command's --help and
// exits 2; an error of the command itself does not.
func TestUsageErrorsPointToHelp(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"plan", "--no-such-flag"}, "Run 'racker plan --help' for usage."},
		{[]string{"describe"}, "Run 'racker describe --help' for usage."},
		{[]string{"no-such-command"}, "Run 'racker --help' for usage."},
		{[]string{"status", "-o", "xml"}, "Run 'racker status --help' for usage."},
		{[]string{"power", "racker-worker-0", "sideways"}, "Run 'racker power --help' for usage."},
		{[]string{"--log-format", "xml", "version"}, "Run 'racker version --help' for usage."},
	} {
		code, _, errs := run(t, "", append(tc.args, flags...)...)
		if code != 2 || !strings.Contains(errs, tc.hint) {
			t.Errorf("racker %s: exit %d, want 2 and %q:\n%s", strings.Join(tc.args, " "), code, tc.hint, errs)
		}
	}
	code, _, errs := run(t, "", append([]string{"describe", "no-such-node"}, flags...)...)
	if code != 1 || strings.Contains(errs, "--help") {
		t.Errorf("a node that is not in the rack is no usage error: exit %d\n%s", code, errs)
	}
}

// Every global flag has a RACKER_* variable, shown in its help; the
// command line wins over it.
func TestGlobalFlagsFromTheEnvironment(t *testing.T) {
	oem, state := exampleRack(t)
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(f.Usage, "[$"+envName(f.Name)+"]") {
			t.Errorf("--%s does not name its variable: %q", f.Name, f.Usage)
		}
	})
	env := map[string]string{"RACKER_OEM_DIR": oem, "RACKER_STATE_DIR": state, "RACKER_MGMT_MAC": "00:11:22:33:44:00"}
	var out strings.Builder
	e := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}
	if code := e.Run(t.Context(), []string{"plan", "--cluster-name", "fromenv", "-o", "name"}); code != 0 || !strings.Contains(out.String(), "fromenv-controller-0") {
		t.Fatalf("plan with RACKER_OEM_DIR, RACKER_STATE_DIR, RACKER_MGMT_MAC: exit %d\n%s", code, out.String())
	}
	// The flag wins: a state folder of its own, so no saved cluster name.
	out.Reset()
	e = &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}
	if code := e.Run(t.Context(), []string{"plan", "-o", "name", "--state-dir", t.TempDir()}); code != 0 || !strings.Contains(out.String(), "racker-controller-0") {
		t.Fatalf("--state-dir over RACKER_STATE_DIR: exit %d\n%s", code, out.String())
	}
	env["RACKER_VERBOSE"] = "maybe"
	e = &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &out, Getenv: func(k string) string { return env[k] }}
	if code := e.Run(t.Context(), []string{"version"}); code != 2 || !strings.Contains(out.String(), "RACKER_VERBOSE") {
		t.Fatalf("a bad RACKER_VERBOSE: exit %d\n%s", code, out.String())
	}
}

// -o: the five formats on the commands that print data.
func TestOutputFormats(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	cmd := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, "", append(args, flags...)...)
		if code != 0 {
			t.Fatalf("racker %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}
	var doc struct {
		Subnet string `yaml:"subnet"`
		Nodes  []struct {
			Hostname   string `yaml:"hostname"`
			PrimaryMAC string `yaml:"primary_mac"`
		} `yaml:"nodes"`
	}
	y := cmd("plan", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(y), &doc); err != nil || doc.Subnet != "172.24.213.0/24" || len(doc.Nodes) != 2 ||
		doc.Nodes[0].PrimaryMAC != "00:11:22:33:44:10" || strings.Contains(y, "{") {
		t.Errorf("plan -o yaml (%v):\n%s", err, y)
	}
	if got := cmd("plan", "-o", "name"); got != "racker-management\nracker-controller-0\nracker-worker-0\n" {
		t.Errorf("plan -o name = %q", got)
	}
	if got := cmd("plan", "-o", "wide"); !strings.Contains(got, "SECONDARY MAC") {
		t.Errorf("plan -o wide:\n%s", got)
	}
	if got := cmd("status", "-o", "wide"); !strings.Contains(got, "REASON") || !strings.Contains(got, "LAST ERROR") {
		t.Errorf("status -o wide:\n%s", got)
	}
	if got := cmd("status", "-o", "name"); got != "racker-controller-0\nracker-worker-0\n" {
		t.Errorf("status -o name = %q", got)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(cmd("version", "-o", "json")), &v); err != nil || v["version"] == nil || v["go"] == nil {
		t.Errorf("version -o json: %v %v", v, err)
	}
	addr, _, _ := startBMC(t, oem)
	bmcArgs := []string{"--bmc", "ipmi://" + addr}
	var p powerView
	if err := json.Unmarshal([]byte(cmd(append([]string{"power", "status", "-o", "json"}, bmcArgs...)...)), &p); err != nil || p.Power != "off" {
		t.Errorf("power status -o json: %+v %v", p, err)
	}
	if got := cmd(append([]string{"bootdev", "-o", "yaml"}, bmcArgs...)...); !strings.Contains(got, "text: none next-boot legacy") {
		t.Errorf("bootdev -o yaml:\n%s", got)
	}
	for _, o := range []string{"table", "text"} {
		if got := cmd(append([]string{"ipmi", "diag", "-o", o}, bmcArgs...)...); !strings.Contains(got, "BMC address:") {
			t.Errorf("ipmi diag -o %s:\n%s", o, got)
		}
	}
}

// Shell completion: NODE arguments from the plan, the word after them,
// and the values of enum flags.
func TestCompletion(t *testing.T) {
	oem, state := exampleRack(t)
	flags := rackFlags(oem, state)
	if code, _, errs := run(t, "", append([]string{"plan", "--cluster-name", "prod"}, flags...)...); code != 0 {
		t.Fatal(errs)
	}
	complete := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, "", append(append([]string{cobra.ShellCompRequestCmd}, flags...), args...)...)
		if code != 0 {
			t.Fatalf("complete %v: exit %d: %s", args, code, errs)
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"power", "prod-w"}, []string{"prod-worker-0"}, []string{"prod-controller-0"}},
		{[]string{"describe", ""}, []string{"prod-controller-0", "prod-worker-0", "00:11:22:33:44:20"}, []string{"prod-management"}},
		{[]string{"power", "prod-worker-0", ""}, []string{"on", "off", "cycle", "status"}, nil},
		{[]string{"reprovision", "prod-worker-0", ""}, []string{"prod-controller-0"}, nil},
		{[]string{"bmc", "forget", "prod-w"}, []string{"prod-worker-0"}, []string{"prod-controller-0"}},
		{[]string{"retire", "prod-"}, []string{"prod-worker-0", "prod-controller-0"}, []string{"prod-management"}},
		{[]string{"replace", "prod-worker-0", ""}, nil, []string{"prod-"}},
		{[]string{"status", "-o", ""}, []string{"table", "wide", "json", "yaml", "name"}, nil},
		{[]string{"bootstrap", "--on-failure", ""}, []string{"retry", "exclude", "ask", "cancel"}, nil},
		{[]string{"serve", "--os", ""}, []string{"flatcar", "testos"}, nil},
		{[]string{"version", "--log-format", ""}, []string{"text", "json"}, nil},
	} {
		got := complete(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(got, w+"\n") {
				t.Errorf("complete %q lacks %s:\n%s", tc.args, w, got)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("complete %q offers %s:\n%s", tc.args, w, got)
			}
		}
	}
}
