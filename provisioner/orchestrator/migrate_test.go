package orchestrator

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// testdata/provision-v1.json was written by the previous release's save
// (commit 61baa4c, the last before phases replaced the booleans): one node
// in every phase and every combination of sub-state booleans it could
// persist, node i with MAC mac(i).
const legacyState = "testdata/provision-v1.json"

// migrated is the phase each legacy node stands for.
var migrated = map[int]Phase{
	1: Pending, 2: BMCCheck, 3: Pending, 4: Reinstall, 5: BMCReachable, 6: PXERequested, 7: Netbooting,
	8: Installing, 9: Installed, 10: FirstBoot, 11: AwaitingDiskBoot, 12: Booted, 13: Ready, 14: Failed,
	15: Excluding, 16: Excluded, 17: Excluding, 18: Excluded, 19: Booted,
}

func copyLegacyState(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(legacyState)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, StateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMigratesThePreviousFormat(t *testing.T) {
	dir := t.TempDir()
	copyLegacyState(t, dir)
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != stateVersionComplete || st.LastEventSeq != 4211 || !st.EventsSynced || len(st.Nodes) != len(migrated) {
		t.Fatalf("state: version %d, seq %d, synced %v, %d nodes", st.Version, st.LastEventSeq, st.EventsSynced, len(st.Nodes))
	}
	for i, want := range migrated {
		if n := st.Nodes[mac(i)]; n == nil || n.Phase != want {
			t.Errorf("node %d: %+v, want phase %s", i, n, want)
		}
	}
	// The order is carried until the reinstall phase takes it; the rest of
	// the record survives as it was.
	n3, n4 := st.Nodes[mac(3)], st.Nodes[mac(4)]
	if !n3.NeedReinstall || !n3.WipeAll || n3.InstallGeneration != 2 || n4.NeedReinstall || n4.Failures != 1 {
		t.Errorf("reinstall orders: %+v / %+v", n3, n4)
	}
	if n := st.Nodes[mac(7)]; !n.UEFISeen || n.LastEvent == "" {
		t.Errorf("facts lost: %+v", n)
	}
	if n := st.Nodes[mac(14)]; n.Failures != 4 || !strings.Contains(n.Reason, "after 3 retries") || n.LastError == "" {
		t.Errorf("failure record lost: %+v", n)
	}
	if n := st.Nodes[mac(17)]; !n.ExcludedByUser || n.Reason != "excluded with --exclude" {
		t.Errorf("user exclusion lost: %+v", n)
	}

	// Saved again, it is the new format, without the booleans.
	if err := finishState(dir, st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, StateFile))
	for _, gone := range []string{`"started"`, `"disk_boot_set"`, `"booted_seen"`, `"power_off_done"`} {
		if strings.Contains(string(b), gone) {
			t.Errorf("saved state still has %s", gone)
		}
	}
	if !strings.Contains(string(b), `"version": 2`) {
		t.Errorf("saved state has no version:\n%s", b)
	}
	again, err := Load(dir)
	if err != nil || again.Nodes[mac(10)].Phase != FirstBoot {
		t.Errorf("reloaded: %v, %v", again.Nodes[mac(10)], err)
	}
}

func TestLoadRefusesAFormatFromTheFuture(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"version": 4, "nodes": {}}`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "newer Racker") {
		t.Fatalf("Load = %v, want a refusal naming a newer Racker", err)
	}
	os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"nodes": {"52:54:00:00:00:01": {"primary_mac": "52:54:00:00:00:01", "phase": "sleeping"}}}`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `"sleeping"`) {
		t.Fatalf("Load = %v, want an error naming the unknown phase", err)
	}
}

// A run of this release resumes the state the previous one left: nodes
// mid-phase go on from where they were (no reinstall unless one was
// ordered), provisioned nodes are left alone, failures get a fresh start
// and exclusions stand.
func TestStateOfThePreviousReleaseResumes(t *testing.T) {
	h := newHarness(t, len(migrated))
	copyLegacyState(t, h.dir)
	h.clock.now = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // after the state's retry times
	h.boot.seq = 4211                                         // the journal goes on after the state's last event
	h.cfg.Nodes[16].Exclude, h.cfg.Nodes[17].Exclude = true, true
	h.cfg.Nodes[16].ExcludeReason, h.cfg.Nodes[17].ExcludeReason = "excluded with --exclude", "excluded with --exclude"
	for _, i := range []int{1, 2, 3, 4, 5, 14, 15, 16} {
		h.sim(i, "", 0) // from a fresh netboot
	}
	// What the nodes mid-install did while nothing ran.
	emit := func(i int, kinds ...api.EventKind) {
		for _, k := range kinds {
			ev := api.Event{MAC: mac(i), Kind: k}
			if k == api.KindIPXE {
				ev.Script = api.ScriptInstall
			}
			h.boot.Emit(ev)
		}
	}
	emit(6, api.KindDHCP, api.KindIPXE, api.KindInstalling, api.KindInstalled)
	emit(7, api.KindInstalling, api.KindInstalled)
	emit(8, api.KindInstalled)
	emit(10, api.KindBooted) // its disk boot device was set before the crash
	for _, i := range []int{6, 7, 8, 9} {
		h.startSim(i, "", 0, true) // installed: boots once its boot device is disk
	}
	h.start()
	res, err := h.wait()
	if err != nil {
		t.Fatalf("resumed run: %v; nodes %s", err, h.describe())
	}
	for _, n := range res.Nodes {
		i := slices.Index(h.macs(), n.PrimaryMAC) + 1
		want := Booted
		switch i {
		case 13:
			want = Ready
		case 17, 18:
			want = Excluded
		}
		if n.Phase != want {
			t.Errorf("node %d: %s (%s), want %s", i, n.Phase, n.Reason, want)
		}
	}
	if f := res.Failed(); len(f) != 0 {
		t.Errorf("failed: %+v", f)
	}
	for _, i := range []int{12, 13, 18, 19} {
		if a, w := h.bmc(i).Actions(), h.bmc(i).BootWrites(); len(a) != 0 || w != 0 {
			t.Errorf("node %d (provisioned or excluded already) was touched: %v, %d boot writes", i, a, w)
		}
	}
	if got, want := h.boot.Reinstalls(), []string{mac(3) + "+wipe", mac(4), mac(14), mac(15), mac(16)}; !sameSet(got, want) {
		t.Errorf("reinstalls %v, want %v (the ordered ones and the failures of the earlier run)", got, want)
	}
	if h.bmc(17).Power() != bmc.PowerOff {
		t.Error("the node excluded mid-power-off was not powered off")
	}
	if f := h.bmc(7).Flags(); f.Device != bmc.DeviceDisk || !f.EFI {
		t.Errorf("node 7's firmware was seen as UEFI: disk boot flags %v", f)
	}
	if n := res.Nodes[13]; n.Failures != 0 {
		t.Errorf("node 14's failures of the earlier run still count: %d", n.Failures)
	}
}

func (h *harness) macs() []string {
	var out []string
	for _, s := range h.cfg.Nodes {
		out = append(out, s.PrimaryMAC)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
