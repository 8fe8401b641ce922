package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// EventsFile is the event journal, inside the state folder.
const EventsFile = "events.jsonl"

// recentEvents is how many events stay in memory for long polls; older
// ones are read back from the file.
const recentEvents = 1 << 16

// maxBatch bounds one group commit, so one fsync never waits on an
// unbounded amount of writing.
const maxBatch = 1024

var errJournalClosed = errors.New("the event journal is closed")

// journal is the append-only event log: one JSON object per line. Writers
// hand events to a single goroutine that writes whatever has queued up and
// syncs once for the whole batch (group commit), so a burst of DHCP events
// costs one fsync, not one each. An event is acknowledged only once it is
// on disk, and sequence numbers continue from the file after a restart.
type journal struct {
	path   string
	f      *os.File
	size   int64
	epoch  string // names this journal: a new file gets a new one
	lines  int    // events in the file (for the compaction trigger)
	kept   int    // events the last compaction kept
	keep   keepPolicy
	log    *slog.Logger
	reqs   chan journalReq
	quit   chan struct{}
	done   chan struct{}
	commit func([]api.Event) // called by the writer after each durable batch, before callers return

	mu      sync.Mutex
	lastSeq uint64
	recent  []api.Event
	notify  chan struct{} // closed and replaced after each commit (long-poll wake-up)
	once    sync.Once
}

type journalReq struct {
	ev   api.Event
	done chan journalAck
}

type journalAck struct {
	ev  api.Event
	err error
}

// openJournal opens (or creates) the journal, replays every event through
// replay in order, and starts the writer. A torn last line (a crash during
// a write) is cut off; an unreadable line elsewhere is logged and skipped.
// A new journal, or one written before journals had epochs, gets a new
// epoch (its first line).
func openJournal(path string, log *slog.Logger, keep keepPolicy, replay func(api.Event)) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the event journal: %w", err)
	}
	j := &journal{path: path, f: f, log: log, keep: keep, reqs: make(chan journalReq), quit: make(chan struct{}),
		done: make(chan struct{}), notify: make(chan struct{})}
	good, err := j.replay(replay)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading the event journal %s: %w", path, err)
	}
	if good < st.Size() {
		log.Warn("cutting off a torn last line of the event journal (crash during a write?)", "file", path, "bytes", st.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("repairing the event journal %s: %w", path, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the event journal %s: %w", path, err)
	}
	j.size = good
	if j.epoch == "" {
		// A new journal (its events, if any, were written before epochs):
		// name it, by rewriting it whole with its header first.
		if j.epoch, err = newEpoch(); err == nil {
			err = j.rewrite(func(api.Event) bool { return true })
		}
		if err != nil {
			j.f.Close()
			return nil, fmt.Errorf("starting the event journal %s: %w", path, err)
		}
		j.stamp()
	}
	j.kept = j.lines
	go j.writer()
	return j, nil
}

// replay reads every complete line and returns the offset after the last one.
func (j *journal) replay(fn func(api.Event)) (int64, error) {
	r := bufio.NewReaderSize(j.f, 1<<20)
	var off int64
	line := 0
	for {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			return off, nil // b (if any) is a torn line without its newline
		}
		if err != nil {
			return 0, fmt.Errorf("reading the event journal %s: %w", j.path, err)
		}
		off += int64(len(b))
		line++
		var ev api.Event
		if err := json.Unmarshal(b, &ev); err == nil && ev.Seq == 0 && ev.Epoch != "" && line == 1 {
			j.epoch = ev.Epoch // the header
			continue
		}
		if err := json.Unmarshal(b, &ev); err != nil || ev.Seq == 0 {
			j.log.Warn("skipping an unreadable line of the event journal", "file", j.path, "line", line, "err", err)
			continue
		}
		upgradeLegacy(&ev)
		if ev.Seq <= j.lastSeq {
			j.log.Warn("skipping an out-of-order event in the journal", "file", j.path, "line", line, "seq", ev.Seq)
			continue
		}
		j.lastSeq = ev.Seq
		j.lines++
		j.remember(ev)
		if fn != nil {
			fn(ev)
		}
	}
}

// stamp puts the journal's epoch on the events kept in memory (replay read
// them before the epoch was known, when the journal had none).
func (j *journal) stamp() {
	for i := range j.recent {
		j.recent[i].Epoch = j.epoch
	}
}

func (j *journal) remember(ev api.Event) {
	ev.Epoch = j.epoch
	if len(j.recent) >= 2*recentEvents {
		j.recent = append(j.recent[:0], j.recent[len(j.recent)-recentEvents:]...)
	}
	j.recent = append(j.recent, ev)
}

// append records ev and returns it with its sequence number once it is durable.
func (j *journal) append(ev api.Event) (api.Event, error) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	req := journalReq{ev: ev, done: make(chan journalAck, 1)}
	select {
	case j.reqs <- req:
	case <-j.quit:
		return ev, errJournalClosed
	}
	ack := <-req.done
	return ack.ev, ack.err
}

func (j *journal) writer() {
	defer close(j.done)
	for {
		select {
		case req := <-j.reqs:
			j.writeBatch(j.gather(req))
		case <-j.quit:
			// Whatever was handed over before quit is still written.
			for {
				select {
				case req := <-j.reqs:
					j.writeBatch(j.gather(req))
				default:
					j.f.Close()
					return
				}
			}
		}
	}
}

func (j *journal) gather(first journalReq) []journalReq {
	batch := []journalReq{first}
	for len(batch) < maxBatch {
		select {
		case req := <-j.reqs:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

func (j *journal) writeBatch(batch []journalReq) {
	var buf bytes.Buffer
	evs := make([]api.Event, len(batch))
	seq := j.lastSeq // only the writer changes lastSeq
	for i, req := range batch {
		seq++
		req.ev.Seq = seq
		req.ev.Epoch = "" // the journal's, said once in its header
		evs[i] = req.ev
		b, _ := json.Marshal(req.ev) // plain strings and numbers: cannot fail
		buf.Write(b)
		buf.WriteByte('\n')
	}
	_, err := j.f.Write(buf.Bytes())
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		err = fmt.Errorf("writing %d event(s) to the journal %s: %w", len(batch), j.path, err)
		// Cut off a partial write so the file stays a sequence of whole lines.
		if terr := j.f.Truncate(j.size); terr == nil {
			j.f.Seek(j.size, io.SeekStart)
		}
		for _, req := range batch {
			req.done <- journalAck{ev: req.ev, err: err}
		}
		return
	}
	j.size += int64(buf.Len())
	j.lines += len(batch)
	j.mu.Lock()
	j.lastSeq = seq
	for _, ev := range evs {
		j.remember(ev)
	}
	close(j.notify)
	j.notify = make(chan struct{})
	j.mu.Unlock()
	if j.commit != nil {
		j.commit(evs)
	}
	for i, req := range batch {
		evs[i].Epoch = j.epoch
		req.done <- journalAck{ev: evs[i]}
	}
	j.maybeCompact()
}

// since returns up to max events after seq, and a channel closed at the
// next commit (to wait on when there are none). A cursor of another epoch
// (a journal since deleted) reads this one from its start.
func (j *journal) since(epoch string, after uint64, max int) ([]api.Event, <-chan struct{}, error) {
	if epoch != "" && epoch != j.epoch {
		after = 0
	}
	j.mu.Lock()
	notify := j.notify
	if after >= j.lastSeq {
		j.mu.Unlock()
		return nil, notify, nil
	}
	if len(j.recent) > 0 && after+1 >= j.recent[0].Seq {
		i := sort.Search(len(j.recent), func(i int) bool { return j.recent[i].Seq > after })
		end := min(len(j.recent), i+max)
		out := append([]api.Event(nil), j.recent[i:end]...)
		j.mu.Unlock()
		return out, notify, nil
	}
	j.mu.Unlock()
	out, err := j.readFile(after, max)
	return out, notify, err
}

// readFile scans the journal for events older than what is kept in memory.
func (j *journal) readFile(after uint64, max int) ([]api.Event, error) {
	f, err := os.Open(j.path)
	if err != nil {
		return nil, fmt.Errorf("reading the event journal: %w", err)
	}
	defer f.Close()
	var out []api.Event
	r := bufio.NewReaderSize(f, 1<<20)
	for len(out) < max {
		b, err := r.ReadBytes('\n')
		if err != nil {
			break // EOF, or a line still being written
		}
		var ev api.Event
		if json.Unmarshal(b, &ev) == nil && ev.Seq > after {
			upgradeLegacy(&ev)
			ev.Epoch = j.epoch
			out = append(out, ev)
		}
	}
	return out, nil
}

// close writes what was handed over and closes the file.
func (j *journal) close() {
	j.once.Do(func() { close(j.quit) })
	<-j.done
}

// upgradeLegacy fills the typed fields of an event journaled before they
// existed: earlier releases wrote the iPXE script, the Ignition phase and
// the client architecture only into Message ("install", "boot",
// "... arch=7 ..."). A journal written by such a release then replays and
// is served like a new one. This is the one place that reads Message, and
// only for lines that lack the typed fields.
func upgradeLegacy(ev *api.Event) {
	switch ev.Kind {
	case api.KindIPXE:
		if s := api.Script(ev.Message); ev.Script == "" &&
			(s == api.ScriptInstall || s == api.ScriptDisk || s == api.ScriptWait || s == api.ScriptUnknown) {
			ev.Script = s
		}
	case api.KindIgnition:
		if p := api.IgnitionPhase(ev.Message); ev.Ignition == "" && (p == api.IgnitionInstall || p == api.IgnitionBoot) {
			ev.Ignition = p
		}
	case api.KindDHCP, api.KindMachineSeen:
		if ev.ClientArch != nil {
			return
		}
		for _, f := range strings.Fields(ev.Message) {
			if v, ok := strings.CutPrefix(f, "arch="); ok {
				if a, err := strconv.ParseUint(v, 10, 16); err == nil {
					ev.ClientArch = []uint16{uint16(a)}
				}
				return
			}
		}
	}
}
