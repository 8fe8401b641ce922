package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// make bench-readme: the README's table holds the headline rows of a full
// run's results and nothing typed by hand; docs/benchmarks.md holds every
// row with its runs; a short run or a README without the markers is
// refused.
func TestWriteReadme(t *testing.T) {
	dir := t.TempDir()
	res := &results{Mode: "full", Machine: machineInfo{Date: "2026-12-04T00:00:00Z", Hostname: "box", CPUs: 2, StateFS: "ext4", Commit: "abc123",
		Note: "a shared machine"}}
	res.add(row{Section: "TFTP", Figure: "10 client(s), blksize 1432", Unit: "MiB/s", Racker: 41.5, Peer: 30.2, PeerIs: "dnsmasq",
		HigherIsBetter: true, Headline: true, RackerRuns: []float64{40, 41.5, 44}, PeerRuns: []float64{29, 30.2, 31}})
	res.add(row{Section: "TFTP", Figure: "system calls per block", Racker: 2.3, Peer: 4.1, PeerIs: "dnsmasq", Decimals: 2})
	res.add(row{Section: "Bootstrap | scaled", Figure: "wall time", Unit: "s", Racker: 249, Peer: 240, PeerIs: "bound: 50 rounds", Headline: true})
	resPath := filepath.Join(dir, "full.json")
	if err := res.writeJSON(resPath); err != nil {
		t.Fatal(err)
	}
	readme, full := filepath.Join(dir, "README.md"), filepath.Join(dir, "benchmarks.md")
	os.WriteFile(readme, []byte("# Racker\n\n## Measured\n\n"+readmeBegin+"\n| old | hand-typed |\n"+readmeEnd+"\n\n## Next\n"), 0o644)
	if err := writeReadme(resPath, readme, full); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	got := string(b)
	for _, want := range []string{"TFTP: 10 client(s), blksize 1432 | 41.5 MiB/s | dnsmasq 30.2 MiB/s | 1.37×", "Bootstrap \\| scaled: wall time | 249 s | bound: 50 rounds 240 s | 0.96×",
		"box, 2 CPUs", "state folder on ext4", "commit abc123", "a shared machine", "## Next"} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hand-typed") || strings.Contains(got, "system calls per block") {
		t.Errorf("README keeps the old table or a row that is no headline:\n%s", got)
	}
	b, _ = os.ReadFile(full)
	if page := string(b); !strings.Contains(page, "system calls per block | 2.30 | dnsmasq 4.10") || !strings.Contains(page, "41.5 MiB/s [40.0, 41.5, 44.0]") {
		t.Errorf("docs page:\n%s", page)
	}
	// Run again: the same README (the markers survive).
	if err := writeReadme(resPath, readme, full); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(readme); string(again) != got {
		t.Errorf("a second run changed the README")
	}

	res.Mode = "short"
	res.writeJSON(resPath)
	if err := writeReadme(resPath, readme, full); err == nil || !strings.Contains(err.Error(), "short") {
		t.Errorf("a short run's results were taken: %v", err)
	}
	res.Mode = "full"
	res.writeJSON(resPath)
	os.WriteFile(readme, []byte("# no markers\n"), 0o644)
	if err := writeReadme(resPath, readme, full); err == nil {
		t.Error("a README without the markers was accepted")
	}
}

// The work folder goes where a state folder would live; tmpfs is refused
// unless asked for.
func TestWorkDirRefusesTmpfs(t *testing.T) {
	if typ, err := fsType("/dev/shm"); err != nil || typ != "tmpfs" {
		testenv.Missing(t, "a tmpfs at /dev/shm")
	}
	if _, err := makeWorkDir("/dev/shm", false); err == nil || !strings.Contains(err.Error(), "tmpfs") {
		t.Fatalf("tmpfs accepted: %v", err)
	}
	d, err := makeWorkDir("/dev/shm", true)
	if err != nil {
		t.Fatalf("-allow-tmpfs: %v", err)
	}
	os.RemoveAll(d)
	disk := t.TempDir()
	if typ, _ := fsType(disk); memoryFS[typ] {
		return // no disk folder to try here
	}
	if _, err := makeWorkDir(disk, false); err != nil {
		t.Fatalf("a disk folder: %v", err)
	}
}
