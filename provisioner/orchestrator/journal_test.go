package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The journal's promises, on its own: a reader never sees a state older
// than one it saw before, or a torn one, while commits (synced or only
// written: a kill -9 keeps both) and compactions run; a run leaves a
// complete snapshot the previous release reads, and during a run a
// snapshot that release refuses.

// testState is n nodes in phase Pending with a counter in Failures.
func testState(n int) *State {
	st := &State{Nodes: map[string]*Node{}}
	for i := range n {
		st.Nodes[mac(i)] = &Node{PrimaryMAC: mac(i), Phase: Pending, PhaseSince: time.Unix(0, 0).UTC()}
	}
	return st
}

func TestReadersSeeEveryCommitInOrderWhileCompacting(t *testing.T) {
	old := compactMin
	compactMin = 2 << 10 // compact every few commits
	t.Cleanup(func() { compactMin = old })
	dir := t.TempDir()
	st := testState(20)
	var stats Stats
	j := openJournal(dir, st, &stats)

	const commits = 400
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() { // racker status, reading as fast as it can
		defer wg.Done()
		last := -1
		for !done.Load() {
			got, err := Load(dir)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			// Every commit raises node 0's counter and LastEventSeq together.
			n0 := got.Nodes[mac(0)]
			if n0 == nil {
				continue // before the first commit
			}
			if n0.Failures < last || uint64(n0.Failures) != got.LastEventSeq {
				select {
				case errs <- fmt.Errorf("read counter %d, event seq %d, after counter %d", n0.Failures, got.LastEventSeq, last):
				default:
				}
				return
			}
			last = n0.Failures
		}
	}()
	for i := 1; i <= commits; i++ {
		st.Nodes[mac(0)].Failures = i
		st.Nodes[mac(i%20)].LastError = fmt.Sprint("change ", i)
		st.LastEventSeq = uint64(i)
		if err := j.commit(st, []Transition{{MAC: mac(0), From: Pending, To: Pending, Cause: "test"}}, nil, i%3 == 0); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if stats.Snapshots < 5 {
		t.Fatalf("only %d compactions: the test did not exercise them", stats.Snapshots)
	}
	got, err := Load(dir)
	if err != nil || got.Nodes[mac(0)].Failures != commits || got.Nodes[mac(19)].LastError != "change 399" || got.Version != stateVersionJournal {
		t.Fatalf("after the commits: %+v, version %d, %v", got.Nodes[mac(0)], got.Version, err)
	}
	if err := j.close(st); err != nil {
		t.Fatal(err)
	}
	if stats.Syncs == 0 || stats.Syncs >= stats.Commits {
		t.Errorf("%d syncs for %d commits: every third commit should sync", stats.Syncs, stats.Commits)
	}
	got, err = Load(dir)
	if err != nil || got.Version != stateVersionComplete || got.Nodes[mac(0)].Failures != commits {
		t.Fatalf("after close: version %d, %v", got.Version, err)
	}
	if _, err := os.Stat(filepath.Join(dir, JournalFile)); !os.IsNotExist(err) {
		t.Errorf("the journal outlived its run: %v", err)
	}
	log, _ := ReadLog(dir)
	if len(log) != commits {
		t.Errorf("%d transitions logged, want %d", len(log), commits)
	}
}

// A crash leaves a torn last line, a snapshot whose journal never began,
// or a journal older than the snapshot (killed mid-compaction): each loads
// as the last complete state.
func TestLoadAfterCrashes(t *testing.T) {
	dir := t.TempDir()
	st := testState(3)
	j := openJournal(dir, st, &Stats{})
	t.Cleanup(func() { j.syncer.stop() })
	for i := 1; i <= 3; i++ {
		st.Nodes[mac(1)].Failures = i
		if err := j.commit(st, nil, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	journal := filepath.Join(dir, JournalFile)
	f, _ := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":99,"nodes":[{"primary_mac":"` + mac(1) + `","phase":"booted"`) // torn
	f.Close()
	got, err := Load(dir)
	if err != nil || got.Nodes[mac(1)].Failures != 3 || got.Nodes[mac(1)].Phase != Pending {
		t.Fatalf("torn line: %+v %v", got.Nodes[mac(1)], err)
	}

	// Killed mid-compaction: the new snapshot is written, the old journal
	// (whose records the snapshot holds) is still there.
	st.Nodes[mac(2)].Failures = 7
	st.JournalSeq = j.seq
	if _, err := writeSnapshot(dir, st, stateVersionJournal); err != nil {
		t.Fatal(err)
	}
	got, err = Load(dir)
	if err != nil || got.Nodes[mac(2)].Failures != 7 || got.Nodes[mac(1)].Failures != 3 {
		t.Fatalf("new snapshot, old journal: %+v %+v %v", got.Nodes[mac(1)], got.Nodes[mac(2)], err)
	}

	// Killed before the run's first journal: the snapshot is the state.
	os.Remove(journal)
	got, err = Load(dir)
	if err != nil || got.Nodes[mac(2)].Failures != 7 {
		t.Fatalf("snapshot without journal: %v", err)
	}

	// The next run starts over from the loaded state and commits on.
	st2, _ := Load(dir)
	j2 := openJournal(dir, st2, &Stats{})
	t.Cleanup(func() { j2.syncer.stop() })
	st2.Nodes[mac(0)].Failures = 1
	if err := j2.commit(st2, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	st2.Nodes[mac(0)].Failures = 2
	if err := j2.commit(st2, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	got, err = Load(dir)
	if err != nil || got.Nodes[mac(0)].Failures != 2 || got.Nodes[mac(2)].Failures != 7 {
		t.Fatalf("after the next run's commits: %v", err)
	}
}

// What a run leaves behind for the previous release: while the run goes
// on, a snapshot it refuses (version 3 > 2, as its Load says "from a
// newer Racker"); once the run ends, a version-2 snapshot and no journal.
func TestARunLeavesWhatThePreviousReleaseReads(t *testing.T) {
	h := newHarness(t, 3)
	h.cfg.Policy = Policy{OnFailure: Cancel}
	for i := 1; i <= 3; i++ {
		h.sim(i, "", 0)
	}
	// After every commit, what a reader loads is what the run holds: no
	// change escaped the journal (commits write only the nodes touched).
	h.cfg.OnChange = func(ns []Node) {
		st, err := loadSnapshot(h.dir)
		if err == nil && st.Version != stateVersionJournal {
			t.Errorf("mid-run snapshot has version %d, want %d", st.Version, stateVersionJournal)
		}
		loaded, err := Load(h.dir)
		if err != nil {
			t.Errorf("loading mid-run: %v", err)
			return
		}
		for _, n := range ns {
			want, _ := json.Marshal(n)
			got, _ := json.Marshal(loaded.Nodes[n.PrimaryMAC])
			if string(got) != string(want) {
				t.Errorf("mid-run, the journal holds\n%s\nfor a node the run holds as\n%s", got, want)
			}
		}
	}
	h.start()
	if res, err := h.wait(); err != nil || len(res.Failed()) > 0 || res.Stats.Commits == 0 || res.Stats.Busy <= 0 {
		t.Fatalf("run: %v, failed %v, stats %+v", err, res.Failed(), res.Stats)
	}
	st, err := loadSnapshot(h.dir)
	if err != nil || st.Version != stateVersionComplete {
		t.Fatalf("after the run: version %d, %v", st.Version, err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, JournalFile)); !os.IsNotExist(err) {
		t.Errorf("a journal is left after the run: %v", err)
	}
}

// Commits write only the nodes touched since the last one, so every change
// to a node must touch it: each input is applied to a small rack in every
// phase, and every node whose record changed must be marked.
func TestEveryChangeTouchesItsNode(t *testing.T) {
	cfg := Config{Logger: nil}
	cfg.defaults()
	clock := newFakeClock()
	cfg.Clock = clock
	r := &runner{cfg: cfg, st: &State{Nodes: map[string]*Node{}}, specs: map[string]NodeSpec{}, byBMC: map[string]string{},
		inflight: map[string]bool{}, asking: map[string]bool{}}
	r.machine = machine{cfg: &r.cfg, now: clock.Now, log: cfg.Logger}
	for i, p := range phaseList {
		m := mac(i)
		r.order = append(r.order, m)
		r.specs[m] = NodeSpec{PrimaryMAC: m, BMCMAC: mac(100 + i), Hostname: fmt.Sprint("n", i)}
		r.byBMC[mac(100+i)] = m
		r.st.Nodes[m] = &Node{PrimaryMAC: m, Phase: p, PhaseSince: clock.Now().Add(-time.Hour), Hostname: "old-name"}
	}
	check := func(what string, apply func()) {
		t.Helper()
		before := map[string]string{}
		for m, n := range r.st.Nodes {
			b, _ := json.Marshal(n)
			before[m] = string(b)
		}
		clear(r.touched)
		apply()
		for m, n := range r.st.Nodes {
			if b, _ := json.Marshal(n); string(b) != before[m] && !r.touched[m] {
				t.Errorf("%s changed %s (phase %s) without touching it", what, m, n.Phase)
			}
		}
	}
	check("prepare", r.prepare)
	check("BMC results", func() {
		for _, m := range r.order {
			for _, k := range []opKind{opDiag, opPXE, opDiskBoot, opPowerOff, opReinstall} {
				r.onOp(opResult{mac: m, kind: k, power: "on", generation: 3})
			}
		}
	})
	check("events", func() {
		for i, m := range r.order {
			for _, k := range []api.EventKind{api.KindDHCP, api.KindTFTP, api.KindIPXE, api.KindIgnition, api.KindInstalling, api.KindInstalled, api.KindBooted} {
				r.onEvent(api.Event{Seq: uint64(i*10 + 1), MAC: m, Kind: k, Message: "x"})
			}
			r.onEvent(api.Event{MAC: mac(100 + i), Kind: api.KindDHCP})
		}
	})
	clock.Advance(24 * time.Hour)
	check("timeouts", r.checkTimeouts)
	check("answers", func() {
		for _, m := range r.order {
			r.onAnswer(m, Retry)
		}
	})
	check("slots", func() { r.schedule(context.Background()) })
}
