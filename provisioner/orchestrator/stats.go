package orchestrator

import "time"

// Stats is what a run spent on itself, apart from waiting for BMCs and
// nodes: benchmarks hold it against the run's wall time.
type Stats struct {
	// Busy is the time the run's loop spent working (applying inputs,
	// scheduling, persisting) rather than waiting for them: the
	// orchestrator's own share of a bootstrap's wall time.
	Busy time.Duration
	// Commits are journal lines written, CommitTime what they took
	// (transition log and syncs included); Syncs are the fdatasyncs among
	// them (before operations start), SyncTime theirs.
	Commits    int
	CommitTime time.Duration
	Syncs      int
	SyncTime   time.Duration
	// Snapshots are full rewrites of StateFile (run start, compactions;
	// the one at the run's end is not counted), SnapshotTime what they took.
	Snapshots    int
	SnapshotTime time.Duration
}
