package rack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The pure parts of the rack's lifecycle, without VMs (the integration
// test drives the rest): machine numbers are never used twice, new MACs
// never collide, an added row keeps every byte of nodes.csv before it, and
// bad requests are refused before anything is touched.
func TestLifecycleNumbersRowsAndRefusals(t *testing.T) {
	ms, err := planMachines(Config{Name: "lt", Nodes: 2, Types: []string{"red", "uefi"}, UEFITypes: []string{"uefi"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &State{Name: "lt", Dir: dir, Machines: ms, Built: true}
	if i := s.nextIndex(); i != 3 {
		t.Errorf("next index of n1, n2: %d", i)
	}
	s.NextIndex = 7 // n1 was replaced by machine number 6, say
	if i := s.nextIndex(); i != 7 {
		t.Errorf("next index after a replacement: %d, want 7", i)
	}
	p, b, sec, err := s.newMACs(7)
	if err != nil || p == b || b == sec || p == ms[1].PrimaryMAC {
		t.Errorf("new MACs %s %s %s: %v", p, b, sec, err)
	}
	if _, _, _, err := s.newMACs(1); err == nil || !strings.Contains(err.Error(), "used by n1") {
		t.Errorf("MACs of n1 handed out again: %v", err)
	}
	if f := s.firmwareOf("uefi", nil); f != "uefi" {
		t.Errorf("firmware of an added uefi-type server: %s", f)
	}
	if f := s.firmwareOf("blue", []string{"blue"}); f != "uefi" {
		t.Errorf("firmware of an added type named by --uefi-types: %s", f)
	}

	// nodes.csv as Racker left it: a comment, no final newline.
	oem := s.OEMDir()
	if err := os.MkdirAll(oem, 0o755); err != nil {
		t.Fatal(err)
	}
	before := nodesCSV(ms) + "# racker retire 2026-12-04: old row"
	if err := os.WriteFile(filepath.Join(oem, "nodes.csv"), []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	m := Machine{Name: "n7", Type: "red", PrimaryMAC: p, BMCMAC: b, SecondaryMAC: sec, Comments: "simulated lt-n7, added"}
	if err := appendRow(s, m); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(oem, "nodes.csv"))
	want := before + "\n" + p + ", " + b + ", " + sec + ", red, simulated lt-n7; added\n"
	if string(got) != want {
		t.Errorf("nodes.csv after appendRow:\n%s\nwant\n%s", got, want)
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := Replace(ctx, dir, "mgmt", LifeConfig{}, nil); err == nil || !strings.Contains(err.Error(), "management node") {
		t.Errorf("replace of the management node: %v", err)
	}
	if _, err := Remove(ctx, dir, "n9", nil); err == nil || !strings.Contains(err.Error(), "no node") {
		t.Errorf("remove of an unknown node: %v", err)
	}
	if _, err := Add(ctx, dir, 0, LifeConfig{}, nil); err == nil {
		t.Error("add of 0 servers accepted")
	}
	s.Built = false
	s.save()
	if _, err := Add(ctx, dir, 1, LifeConfig{}, nil); err == nil || !strings.Contains(err.Error(), "racker-sim up") {
		t.Errorf("add to a rack not up: %v", err)
	}
}
