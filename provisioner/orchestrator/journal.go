package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// The orchestrator's state is a snapshot (StateFile) plus an append-only
// journal (JournalFile), as the DHCP leases are kept: each batch of changes
// the loop persists is one journal line holding the records of the nodes
// that changed, written with one write and one fdatasync. Rewriting the
// whole provision.json after each batch, as the previous release did, cost
// a rack of 1,000 nodes most of its bootstrap's wall time; a journal line
// costs the same for a rack of 3 and of 1,000.
//
// Readers (racker status) take no lock: they read the snapshot, then the
// journal, and apply the journal's records after the snapshot's sequence
// number. A compaction writes the new snapshot first and then replaces the
// journal, whose first line names the sequence number it continues from;
// a reader that sees a journal newer than its snapshot reads again.
//
// A snapshot written while a run is under way has version 3: it is not the
// whole state without its journal, and the previous release (which reads
// version 2 and knows no journal) refuses it rather than resuming from a
// stale state. A run that ends, and every change outside a run, leave a
// complete version-2 snapshot and no journal, which the previous release
// reads as its own.

// JournalFile holds the state changes since the snapshot in StateFile.
const JournalFile = "provision-journal.jsonl"

// Snapshot versions: the state alone, or the state a journal continues.
const (
	stateVersionComplete = 2
	stateVersionJournal  = 3
)

// journalLine is one line of JournalFile: the header (Base set), or a
// record of the nodes that changed, with the run's event position.
type journalLine struct {
	Base         *uint64 `json:"base,omitempty"`
	Seq          uint64  `json:"seq,omitempty"`
	LastEventSeq uint64  `json:"last_event_seq,omitempty"`
	EventsSynced bool    `json:"events_synced,omitempty"`
	Nodes        []*Node `json:"nodes,omitempty"`
}

// compactAfter: a journal is folded into a new snapshot once it is larger
// than this many times the snapshot (and than compactMin), so a reader
// never parses much more than the state itself.
var (
	compactAfter int64 = 4
	compactMin   int64 = 1 << 20 // a variable: tests compact often
)

// journal is a run's writer of the state: it owns the journal and the
// transition log while the run holds the provisioning lock.
type journal struct {
	dir   string
	f     *os.File // JournalFile, appended
	log   *os.File // LogFile, appended
	seq   uint64
	size  int64 // bytes in the journal
	snap  int64 // bytes in the snapshot
	stats *Stats

	// unfinished: the state on disk has a journal (a run was killed), so
	// close must leave a complete snapshot even if this run changed nothing.
	unfinished bool
	// unsynced: lines written since the last sync was asked of the syncer
	// (journal_sync.go), which owns the fdatasyncs.
	unsynced bool
	syncer   *syncer

	// What the snapshot and journal hold, to find what changed.
	held         map[string]Node
	lastEventSeq uint64
	eventsSynced bool
	buf          []byte
}

// openJournal prepares a run's journal for st (as Load returned it).
// Nothing is written until something changes, so a run that finds every
// node where it wants it leaves the files as they were; the first change
// writes a version-3 snapshot and starts an empty journal after it, which
// also drops a torn last line a crash may have left.
func openJournal(dir string, st *State, stats *Stats) *journal {
	j := &journal{dir: dir, seq: st.JournalSeq, stats: stats, unfinished: st.Version == stateVersionJournal}
	if j.unfinished {
		// A killed run's last lines may be written but not yet on disk,
		// and this run acts on them: make them durable first.
		if f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_WRONLY, 0); err == nil {
			unix.Fdatasync(int(f.Fd()))
			f.Close()
		}
	}
	j.syncer = startSyncer()
	return j
}

// commit writes the changes since the last commit: the transitions go to
// the log (history, never synced on their own), the changed nodes to the
// journal as one line. The line is written at once (readers and a kill -9
// see it); with sync it is on disk when commit returns, otherwise it gets
// there with the next sync (after). touched names the nodes that may have
// changed (nil: any of them), so a commit costs what changed, not the rack.
func (j *journal) commit(st *State, ts []Transition, touched map[string]bool, sync bool) error {
	if err := j.syncer.failed(); err != nil {
		return err
	}
	start := time.Now()
	if len(ts) > 0 {
		if j.log == nil {
			log, err := os.OpenFile(filepath.Join(j.dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("opening transition log: %w", err)
			}
			j.log = log
		}
		b := j.buf[:0]
		for _, t := range ts {
			line, err := json.Marshal(t)
			if err != nil {
				return err
			}
			b = append(append(b, line...), '\n')
		}
		if _, err := j.log.Write(b); err != nil {
			return fmt.Errorf("appending to transition log: %w", err)
		}
	}
	if j.f == nil {
		return j.compact(st) // the run's first change: a snapshot that holds it
	}
	rec := journalLine{Seq: j.seq + 1, LastEventSeq: st.LastEventSeq, EventsSynced: st.EventsSynced}
	changed := func(mac string, n *Node) {
		if old, ok := j.held[mac]; !ok || !sameNode(old, *n) {
			rec.Nodes = append(rec.Nodes, n)
		}
	}
	if touched == nil {
		for mac, n := range st.Nodes {
			changed(mac, n)
		}
	} else {
		for mac := range touched {
			if n := st.Nodes[mac]; n != nil {
				changed(mac, n)
			}
		}
	}
	if len(rec.Nodes) == 0 && rec.LastEventSeq == j.lastEventSeq && rec.EventsSynced == j.eventsSynced {
		return nil
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	j.buf = append(append(j.buf[:0], line...), '\n')
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("appending to the state journal %s: %w", j.f.Name(), err)
	}
	j.unsynced = true
	if sync {
		j.after(nil)
		if err := j.syncer.drain(); err != nil {
			return err
		}
	}
	j.seq, j.size = rec.Seq, j.size+int64(len(j.buf))
	st.JournalSeq = j.seq
	j.hold(st, rec.Nodes)
	j.stats.Commits++
	j.stats.CommitTime += time.Since(start)
	if j.size > compactMin && j.size > compactAfter*j.snap {
		return j.compact(st)
	}
	return nil
}

// after runs start once every line written so far is on disk: at once
// when there is nothing to wait for, else from the syncer, which covers
// every request waiting with one fdatasync.
func (j *journal) after(start []func(ok bool)) {
	if !j.unsynced && j.syncer.idle() {
		for _, f := range start {
			f(true)
		}
		return
	}
	j.unsynced = false
	j.syncer.request(j.f, start)
}

func (j *journal) hold(st *State, nodes []*Node) {
	for _, n := range nodes {
		j.held[n.PrimaryMAC] = *n
	}
	j.lastEventSeq, j.eventsSynced = st.LastEventSeq, st.EventsSynced
}

// compact writes st as the snapshot a new, empty journal continues. The
// syncer is drained first: it must not sync a journal file being replaced.
func (j *journal) compact(st *State) error {
	if err := j.syncer.drain(); err != nil {
		return err
	}
	start := time.Now()
	st.JournalSeq = j.seq
	n, err := writeSnapshot(j.dir, st, stateVersionJournal)
	if err != nil {
		return err
	}
	header, _ := json.Marshal(journalLine{Base: &j.seq})
	path := filepath.Join(j.dir, JournalFile)
	if err := atomicfile.Write(path, append(header, '\n'), 0o644); err != nil {
		return fmt.Errorf("starting the state journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the state journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size, j.snap, j.unsynced = f, int64(len(header)+1), n, false
	j.held = make(map[string]Node, len(st.Nodes))
	j.hold(st, nil)
	for mac, n := range st.Nodes {
		j.held[mac] = *n
	}
	j.stats.Snapshots++
	j.stats.SnapshotTime += time.Since(start)
	return nil
}

// close ends the run's journal: st becomes a complete snapshot and the
// journal goes; the transition log is synced.
func (j *journal) close(st *State) error {
	err := j.syncer.stop()
	j.stats.Syncs, j.stats.SyncTime = j.syncer.counts()
	if err != nil {
		return err
	}
	if j.log != nil {
		defer j.log.Close()
		if err := j.log.Sync(); err != nil {
			return fmt.Errorf("syncing transition log: %w", err)
		}
	}
	if j.f == nil && !j.unfinished {
		return nil
	}
	if j.f != nil {
		defer j.f.Close()
	}
	return finishState(j.dir, st)
}

// finishState writes st as a complete snapshot and removes the journal.
func finishState(dir string, st *State) error {
	if _, err := writeSnapshot(dir, st, stateVersionComplete); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, JournalFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the state journal: %w", err)
	}
	return nil
}

func writeSnapshot(dir string, st *State, version int) (int64, error) {
	st.Version = version
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := atomicfile.Write(filepath.Join(dir, StateFile), append(b, '\n'), 0o644); err != nil {
		return 0, fmt.Errorf("saving provisioning state: %w", err)
	}
	return int64(len(b) + 1), nil
}

// readJournal returns the journal's base and its records in order, up to
// the first line that is torn or out of sequence (a crash mid-write). A
// missing journal is ok=false.
func readJournal(dir string) (base uint64, recs []journalLine, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("reading the state journal: %w", err)
	}
	first := true
	for len(b) > 0 {
		line, rest, complete := bytes.Cut(b, []byte{'\n'})
		b = rest
		if !complete {
			break // torn
		}
		var l journalLine
		if json.Unmarshal(line, &l) != nil {
			break
		}
		if first {
			if l.Base == nil {
				return 0, nil, false, fmt.Errorf("reading the state journal %s: no header line", filepath.Join(dir, JournalFile))
			}
			base, first = *l.Base, false
			continue
		}
		if l.Seq != base+uint64(len(recs))+1 {
			break
		}
		recs = append(recs, l)
	}
	if first {
		return 0, nil, false, nil // not even a header yet: being created
	}
	return base, recs, true, nil
}

// sameNode compares two records by value (BMCReachable by what it points to).
func sameNode(a, b Node) bool {
	ra, rb := a.BMCReachable, b.BMCReachable
	a.BMCReachable, b.BMCReachable = nil, nil
	if a != b {
		return false
	}
	return (ra == nil) == (rb == nil) && (ra == nil || *ra == *rb)
}
