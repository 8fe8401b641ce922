package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run runs racker in-process and returns its exit code and output.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// exampleRack copies examples/rack into a temporary OEM folder.
func exampleRack(t *testing.T) (oem, state string) {
	t.Helper()
	dir := t.TempDir()
	oem, state = filepath.Join(dir, "oem"), filepath.Join(dir, "state")
	os.MkdirAll(oem, 0o755)
	for _, f := range []string{"nodes.csv", "ipmi_user", "ipmi_password"} {
		b, err := os.ReadFile(filepath.Join("../../examples/rack", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(oem, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return oem, state
}

func rackFlags(oem, state string) []string {
	return []string{"--oem-dir", oem, "--state-dir", state, "--mgmt-mac", "00:11:22:33:44:00"}
}

func TestFactoryCheck(t *testing.T) {
	oem, state := exampleRack(t)
	code, out, errs := run(t, "", append([]string{"factory", "check"}, rackFlags(oem, state)...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"rack OK", "management node: 00:11:22:33:44:00 (line 2)", "PXE interface: not on this machine (secondary MAC 00:11:22:33:44:30)", "nodes: 2 besides", "purple", "controllers: 1: 00:11:22:33:44:10 (red)"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("factory check wrote state")
	}

	// A broken file: every problem, with its line, and exit 1.
	os.WriteFile(filepath.Join(oem, "nodes.csv"), []byte("00:11:22:33:44:00,00:11:22:33:44:01,00:11:22:33:44:30,red\nxx,00:11:22:33:44:11,,red\n00:11:22:33:44:20,00:11:22:33:44:01,,red\n"), 0o644)
	code, _, errs = run(t, "", append([]string{"factory", "check"}, rackFlags(oem, state)...)...)
	if code != 1 {
		t.Errorf("exit %d for a broken rack", code)
	}
	for _, want := range []string{"2 problem(s)", "nodes.csv:2: primary MAC: invalid MAC \"xx\"", "nodes.csv:3: BMC MAC: 00:11:22:33:44:01 is already used on line 1"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lack %q:\n%s", want, errs)
		}
	}
}

func TestPlanJSONStableAcrossRunsAndAddedRows(t *testing.T) {
	oem, state := exampleRack(t)
	args := append([]string{"plan", "-o", "json"}, rackFlags(oem, state)...)
	code, first, errs := run(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, again, _ := run(t, "", args...)
	if first != again {
		t.Fatalf("plan changed between runs:\n%s\n%s", first, again)
	}
	// Add a row at the top of the nodes (after the header and mgmt row) and one at the end.
	b, _ := os.ReadFile(filepath.Join(oem, "nodes.csv"))
	lines := strings.SplitAfter(string(b), "\n")
	grown := lines[0] + lines[1] + "00:11:22:33:44:a0,00:11:22:33:44:a1,,red\n" + strings.Join(lines[2:], "") + "00:11:22:33:44:b0,00:11:22:33:44:b1,,purple\n"
	os.WriteFile(filepath.Join(oem, "nodes.csv"), []byte(grown), 0o600)
	_, after, errs := run(t, "", args...)
	type node struct{ PrimaryMAC, Hostname, IP, BMCIP, Role string }
	parse := func(s string) map[string]node {
		var doc struct {
			Nodes []struct {
				PrimaryMAC string `json:"primary_mac"`
				Hostname   string `json:"hostname"`
				IP         string `json:"ip"`
				BMCIP      string `json:"bmc_ip"`
				Role       string `json:"role"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatalf("%v: %s %s", err, s, errs)
		}
		m := map[string]node{}
		for _, n := range doc.Nodes {
			m[n.PrimaryMAC] = node{n.PrimaryMAC, n.Hostname, n.IP, n.BMCIP, n.Role}
		}
		return m
	}
	before, grownPlan := parse(first), parse(after)
	if len(grownPlan) != len(before)+2 {
		t.Fatalf("want %d nodes after adding two, got %d", len(before)+2, len(grownPlan))
	}
	for mac, n := range before {
		if grownPlan[mac] != n {
			t.Errorf("%s changed: %+v → %+v", mac, n, grownPlan[mac])
		}
	}
}

func TestFactoryReset(t *testing.T) {
	oem, state := exampleRack(t)
	if code, _, errs := run(t, "", append([]string{"plan"}, rackFlags(oem, state)...)...); code != 0 {
		t.Fatal(errs)
	}
	flags := rackFlags(oem, state)
	code, _, errs := run(t, "", append([]string{"factory", "reset"}, flags...)...)
	if code == 0 || !strings.Contains(errs, "pass --yes") {
		t.Errorf("reset without a terminal or --yes: exit %d %s", code, errs)
	}
	if entries, _ := os.ReadDir(state); len(entries) == 0 {
		t.Fatalf("state cleared without confirmation")
	}
	code, _, errs = run(t, "", append([]string{"factory", "reset", "--yes", "--nodes"}, flags...)...)
	if code != 0 {
		t.Fatal(errs)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("state not cleared: %v", entries)
	}
	b, _ := os.ReadFile(filepath.Join(oem, "nodes.csv"))
	if string(b) != "Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\n" {
		t.Errorf("nodes.csv after --nodes: %q", b)
	}
}

func TestFactoryResetAsksOnATerminal(t *testing.T) {
	oem, state := exampleRack(t)
	os.MkdirAll(state, 0o755)
	os.WriteFile(filepath.Join(state, "x"), nil, 0o644)
	for _, tc := range []struct {
		answer string
		kept   bool
	}{{"n\n", true}, {"\n", true}, {"yes\n", false}} {
		var out, errb bytes.Buffer
		env := &Env{Stdin: strings.NewReader(tc.answer), Stdout: &out, Stderr: &errb, IsTerminal: func() bool { return true }}
		root := NewRoot(env)
		root.SetArgs(append([]string{"factory", "reset"}, rackFlags(oem, state)...))
		root.Execute()
		_, err := os.Stat(filepath.Join(state, "x"))
		if kept := err == nil; kept != tc.kept {
			t.Errorf("answer %q: state kept=%v, want %v (%s)", tc.answer, kept, tc.kept, out.String())
		}
	}
}

func TestGenSSHKey(t *testing.T) {
	state := t.TempDir()
	code, pub, errs := run(t, "", "factory", "gen-ssh-key", "--state-dir", state)
	if code != 0 || !strings.HasPrefix(pub, "ssh-ed25519 ") {
		t.Fatalf("exit %d, %q %s", code, pub, errs)
	}
	st, err := os.Stat(filepath.Join(state, SSHKeyPath))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", st, err)
	}
	code, _, errs = run(t, "", "factory", "gen-ssh-key", "--state-dir", state)
	if code == 0 || !strings.Contains(errs, "--force") {
		t.Errorf("second gen-ssh-key overwrote or failed unclearly: %d %s", code, errs)
	}
	_, pub2, _ := run(t, "", "factory", "gen-ssh-key", "--state-dir", state, "--force")
	if pub2 == pub || !strings.HasPrefix(pub2, "ssh-ed25519 ") {
		t.Errorf("--force did not make a new key")
	}
}

func TestLogFormatAndVersion(t *testing.T) {
	code, out, _ := run(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "racker ") {
		t.Errorf("version: %d %q", code, out)
	}
	code, _, errs := run(t, "", "--log-format", "xml", "version")
	if code == 0 || !strings.Contains(errs, "--log-format") {
		t.Errorf("bad log format accepted: %s", errs)
	}
}

// The command tree is built in one place (NewRoot): every command, and
// nothing registers itself from elsewhere.
func TestCommandTree(t *testing.T) {
	var got []string
	var walk func(prefix string, c *cobra.Command)
	walk = func(prefix string, c *cobra.Command) {
		for _, sub := range c.Commands() {
			got = append(got, prefix+sub.Name())
			walk(prefix+sub.Name()+" ", sub)
		}
	}
	walk("", NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}))
	want := []string{"bmc", "bmc diag", "bmc forget", "bootdev", "bootstrap", "console", "describe", "events", "factory", "factory check", "factory discover", "factory gen-ssh-key",
		"factory reset", "get", "install", "plan", "power", "release", "release docs", "release image", "release keygen", "release push",
		"replace", "reprovision", "retire", "rollback", "serve", "status", "ui", "ui token", "update", "upgrade", "version"}
	if !slices.Equal(got, want) {
		t.Errorf("commands:\n%q\nwant\n%q", got, want)
	}
}

// Questions read Env's Stdin through one buffer: an answer typed ahead for
// the next question is kept, and the end of input is reported.
func TestAskKeepsTypedAheadAnswers(t *testing.T) {
	var out bytes.Buffer
	env := &Env{Stdin: strings.NewReader(" yes \nno\n"), Stdout: &out}
	a1, err1 := env.ask("first? ")
	a2, err2 := env.ask("second? ")
	a3, err3 := env.ask("third? ")
	if a1 != "yes" || err1 != nil || a2 != "no" || err2 != nil || a3 != "" || err3 != io.EOF {
		t.Errorf("answers %q %v, %q %v, %q %v", a1, err1, a2, err2, a3, err3)
	}
	if out.String() != "first? second? third? " {
		t.Errorf("questions printed %q", out.String())
	}
}

// serve, bootstrap and reprovision take the boot services' flags from one
// declaration: the same names, defaults and help on each.
func TestBootFlagsAreShared(t *testing.T) {
	var want pflag.FlagSet
	addBootFlags(&want, &bootFlags{})
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	n := 0
	want.VisitAll(func(w *pflag.Flag) {
		n++
		for _, name := range []string{"serve", "bootstrap", "reprovision"} {
			c, _, err := root.Find([]string{name})
			if err != nil {
				t.Fatal(err)
			}
			f := c.Flags().Lookup(w.Name)
			if f == nil || f.DefValue != w.DefValue || f.Usage != w.Usage {
				t.Errorf("%s --%s: %+v, want as declared once: %+v", name, w.Name, f, w)
			}
		}
	})
	if n < 7 {
		t.Errorf("only %d boot-service flags", n)
	}
}
