package inventory

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testLocalMACs stands in for this machine's interfaces: the example rack's
// management node (primary and secondary NIC).
func testLocalMACs() (map[string]string, error) {
	return map[string]string{"00:11:22:33:44:00": "eth0", "00:11:22:33:44:30": "eth1", "02:00:00:00:00:99": "lo9"}, nil
}

// oemDir makes an OEM folder with nodes.csv taken from a fixture and valid
// credentials.
func oemDir(t *testing.T, csvPath string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, NodesFile), string(b), 0o644)
	writeFile(t, filepath.Join(dir, UserFile), "admin\n", 0o600)
	writeFile(t, filepath.Join(dir, PasswordFile), "s3cret pass\n", 0o600)
	return dir
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// describe renders an inventory for golden comparison.
func describe(inv *Inventory) string {
	var b strings.Builder
	fmt.Fprintf(&b, "management: line %d, PXE interface %q\n", inv.Mgmt().Line, inv.PXEInterface)
	for _, n := range inv.Nodes {
		fmt.Fprintf(&b, "line %d: primary=%s bmc=%s secondary=%q type=%q comments=%q\n",
			n.Line, n.PrimaryMAC, n.BMCMAC, n.SecondaryMAC, n.Type, n.Comments)
	}
	for _, w := range inv.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func TestFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.csv")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".csv")
		t.Run(name, func(t *testing.T) {
			inv, err := Load(Options{Dir: oemDir(t, f), LocalMACs: testLocalMACs})
			var got string
			switch {
			case strings.HasPrefix(name, "valid-"):
				if err != nil {
					t.Fatalf("valid fixture rejected:\n%v", err)
				}
				got = describe(inv)
			case strings.HasPrefix(name, "invalid-"):
				var probs *Problems
				if !errors.As(err, &probs) {
					t.Fatalf("invalid fixture accepted (err=%v)", err)
				}
				got = err.Error() + "\n"
			default:
				t.Fatalf("fixture %s: name must start with valid- or invalid-", f)
			}
			golden := strings.TrimSuffix(f, ".csv") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestNormalizeMAC(t *testing.T) {
	good := map[string]string{
		"00:11:22:33:44:AA":   "00:11:22:33:44:aa",
		"00-11-22-33-44-aa":   "00:11:22:33:44:aa",
		" 0a:0B:0c:0D:0e:0F ": "0a:0b:0c:0d:0e:0f",
	}
	for in, want := range good {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "00:11:22:33:44", "00:11:22:33:44:55:66", "00:11-22:33:44:55", "001122334455", "0011.2233.4455", "00:11:22:33:44:5", "gg:11:22:33:44:55", "00:11:22:33:44:555"} {
		if got, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) = %q, want an error", bad, got)
		}
	}
}

func TestMgmtMACOverride(t *testing.T) {
	dir := oemDir(t, "testdata/valid-seed.csv")
	noLocal := func() (map[string]string, error) { return map[string]string{}, nil }
	inv, err := Load(Options{Dir: dir, MgmtMAC: "00-11-22-33-44-00", LocalMACs: noLocal})
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Mgmt().PrimaryMAC; got != "00:11:22:33:44:00" {
		t.Errorf("management node %s, want 00:11:22:33:44:00", got)
	}
	if inv.PXEInterface != "" || len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "PXE interface") {
		t.Errorf("want a PXE-interface warning and no interface, got %q %q", inv.PXEInterface, inv.Warnings)
	}
	inv, err = Load(Options{Dir: dir, MgmtMAC: "00:11:22:33:44:00", PXEInterface: "br9", LocalMACs: noLocal})
	if err != nil || inv.PXEInterface != "br9" {
		t.Fatalf("--pxe-interface not honoured: %v %v", inv, err)
	}
	_, err = Load(Options{Dir: dir, MgmtMAC: "00:11:22:33:99:99", LocalMACs: noLocal})
	if err == nil || !strings.Contains(err.Error(), "nodes.csv: management node: no row has the MAC 00:11:22:33:99:99") {
		t.Errorf("unknown --mgmt-mac: got %v", err)
	}
	// The override must not match the BMC MAC (it is not a NIC of the node).
	_, err = Load(Options{Dir: dir, MgmtMAC: "00:11:22:33:44:01", LocalMACs: noLocal})
	if err == nil {
		t.Errorf("a BMC MAC was accepted as the management node's MAC")
	}
}

func TestCredentials(t *testing.T) {
	dir := oemDir(t, "testdata/valid-seed.csv")
	inv, err := Load(Options{Dir: dir, LocalMACs: testLocalMACs})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Credentials.User != "admin" || inv.Credentials.Password != "s3cret pass" {
		t.Errorf("credentials not read with only the trailing newline trimmed")
	}
	for _, s := range []string{inv.Credentials.String(), fmt.Sprintf("%v %+v %#v", inv.Credentials, inv.Credentials, inv.Credentials), fmt.Sprint(inv)} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "admin") {
			t.Errorf("credentials leak into formatting: %s", s)
		}
	}

	// Loose mode: a warning naming the file, not an error.
	os.Chmod(filepath.Join(dir, PasswordFile), 0o644)
	inv, err = Load(Options{Dir: dir, LocalMACs: testLocalMACs})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "ipmi_password: readable by group or others") {
		t.Errorf("want a mode warning, got %q", inv.Warnings)
	}

	// Empty and missing files: errors, together with the nodes.csv ones.
	writeFile(t, filepath.Join(dir, UserFile), "\n", 0o600)
	os.Remove(filepath.Join(dir, PasswordFile))
	writeFile(t, filepath.Join(dir, NodesFile), "00:11:22:33:44:00,00:11:22:33:44:01,00:11:22:33:44:30,red\nbad,00:11:22:33:44:11,,red\n", 0o644)
	_, err = Load(Options{Dir: dir, LocalMACs: testLocalMACs})
	want := "nodes.csv:2: primary MAC: invalid MAC \"bad\" (want six hex pairs separated by ':' or '-')\n" +
		"ipmi_user: empty: the file must hold the BMC user\n" +
		"ipmi_password: cannot read: file missing"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	if strings.Contains(fmt.Sprint(err), "s3cret") {
		t.Errorf("password in error")
	}
}

func TestMissingFolder(t *testing.T) {
	_, err := Load(Options{Dir: filepath.Join(t.TempDir(), "nope"), LocalMACs: testLocalMACs})
	want := "nodes.csv: cannot read: file missing\nipmi_user: cannot read: file missing\nipmi_password: cannot read: file missing"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestHeaderOnlyIsNoNodes(t *testing.T) {
	dir := oemDir(t, "testdata/valid-seed.csv")
	writeFile(t, filepath.Join(dir, NodesFile), Header+"\n", 0o644)
	_, err := Load(Options{Dir: dir, LocalMACs: testLocalMACs})
	if err == nil || !strings.Contains(err.Error(), "nodes.csv: no nodes") {
		t.Errorf("got %v", err)
	}
}

// FuzzParse checks that no input crashes the parser, that every problem
// names nodes.csv and a line inside the file, and that accepted MACs are
// normalised and unique.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.csv")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(string(b))
	}
	f.Add("")
	f.Add("\uFEFF#x\r\n,,,,\n\"")
	f.Fuzz(func(t *testing.T, data string) {
		nodes, err := Parse(NodesFile, strings.NewReader(data))
		lines := strings.Count(data, "\n") + 1
		if err != nil {
			var probs *Problems
			if !errors.As(err, &probs) || len(*probs) == 0 {
				t.Fatalf("error is not *Problems: %v", err)
			}
			for _, p := range *probs {
				if p.File != NodesFile || p.Line < 1 || p.Line > lines+1 || p.Msg == "" {
					t.Fatalf("bad problem %+v for %d lines", p, lines)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, n := range nodes {
			for _, m := range []string{n.PrimaryMAC, n.BMCMAC, n.SecondaryMAC} {
				if m == "" {
					continue
				}
				if nm, err := NormalizeMAC(m); err != nil || nm != m {
					t.Fatalf("MAC %q not normalised", m)
				}
				if seen[m] {
					t.Fatalf("MAC %s accepted twice", m)
				}
				seen[m] = true
			}
			if n.PrimaryMAC == "" || n.BMCMAC == "" || n.Type == "" || n.Line < 1 {
				t.Fatalf("incomplete node accepted: %+v", n)
			}
		}
	})
}
