package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lifecycleCSV = "Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\r\n" +
	"# the rack in room 3\r\n" +
	"00:11:22:33:44:00, 00:11:22:33:44:01, 00:11:22:33:44:30, red, mgmt node\r\n" +
	"\r\n" +
	"00-11-22-33-44-10, 00:11:22:33:44:11, 00:11:22:33:44:40, red, \"slot 2, left\"\r\n" +
	"00:11:22:33:44:20, 00:11:22:33:44:21, , purple\r\n"

// A replace and a retire change one row each; comments, the header, the
// blank line and CRLF endings are kept, the old rows stay as comments, and
// the file parses to the rack that is left.
func TestRewriteRowKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, NodesFile)
	if err := os.WriteFile(path, []byte(lifecycleCSV), 0o640); err != nil {
		t.Fatal(err)
	}
	repl := Node{PrimaryMAC: "0a:00:00:00:00:10", BMCMAC: "0a:00:00:00:00:11", SecondaryMAC: "0a:00:00:00:00:40", Type: "red", Comments: "slot 2, left"}
	if err := ReplaceRow(dir, "00:11:22:33:44:10", repl, "replaced 2026-12-04"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveRow(dir, "00:11:22:33:44:20", "retired 2026-12-04"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\r\n# the rack in room 3\r\n",
		"mgmt node\r\n\r\n# replaced 2026-12-04: was 00-11-22-33-44-10, 00:11:22:33:44:11, 00:11:22:33:44:40, red, \"slot 2, left\"\r\n",
		"0a:00:00:00:00:10, 0a:00:00:00:00:11, 0a:00:00:00:00:40, red, \"slot 2, left\"\r\n",
		"# retired 2026-12-04: 00:11:22:33:44:20, 00:11:22:33:44:21, , purple\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten nodes.csv lacks %q:\n%s", want, got)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	nodes, err := Parse(NodesFile, strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[1].PrimaryMAC != repl.PrimaryMAC || nodes[1].Comments != "slot 2, left" {
		t.Errorf("rows after the rewrite: %+v", nodes)
	}
}

func TestRewriteRowMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, NodesFile), []byte(lifecycleCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	// The retired row (a comment now) is not a row any more.
	if err := RemoveRow(dir, "00:11:22:33:44:20", "retired"); err != nil {
		t.Fatal(err)
	}
	err := RemoveRow(dir, "00:11:22:33:44:20", "retired")
	if !errors.Is(err, ErrNoRow) || !strings.Contains(err.Error(), "00:11:22:33:44:20") {
		t.Errorf("removing a missing row: %v", err)
	}
	if err := RemoveRow(dir, "not-a-mac", "x"); err == nil {
		t.Error("a bad MAC was accepted")
	}
}
