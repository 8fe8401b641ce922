package web

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Bounded journal. The journal takes input from anyone on the internal
// network (DHCP from unknown MACs, iPXE requests, refused requests), so it
// is compacted: an event is kept while it is among the last perMAC events
// of a planned machine (a node or a BMC), among the last others events of
// everything else, or younger than recent. What arrives within recent is
// bounded by the recording limits (DHCP's and the web server's), so the
// file stays bounded under any flood; sequence numbers never change, and
// a reader whose cursor points into a compacted stretch simply gets the
// events kept after it.

// keepPolicy says which events a compaction keeps; planned says whether a
// MAC belongs to a planned machine.
type keepPolicy struct {
	perMAC  int
	others  int
	recent  time.Duration
	planned func(mac string) bool
	now     func() time.Time
	// every is how many appended events start a compaction, on top of
	// what the last one kept.
	every int
}

func defaultKeep(planned func(string) bool, now func() time.Time) keepPolicy {
	return keepPolicy{perMAC: 256, others: 2048, recent: time.Hour, planned: planned, now: now, every: 20000}
}

// header is the journal's first line: its epoch.
type header struct {
	Seq   uint64 `json:"seq"`
	Epoch string `json:"epoch"`
	Since string `json:"since"`
}

func newEpoch() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a journal epoch: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// maybeCompact compacts when enough was appended since the last time. It
// runs on the writer goroutine, between batches.
func (j *journal) maybeCompact() {
	if j.keep.every <= 0 || j.lines < j.kept+j.keep.every {
		return
	}
	keep, err := j.keepSet()
	if err == nil {
		err = j.rewrite(func(ev api.Event) bool { return keep[ev.Seq] })
	}
	if err != nil {
		// Compaction is housekeeping: appends go on (a full disk is
		// reported by the next write), and the next batch tries again.
		j.log.Error("compacting the event journal failed; appending to the old one", "file", j.path, "err", err)
		j.kept = j.lines // try again after another round of appends
		return
	}
	// Readers see what the file holds: the memory copy forgets the rest.
	j.mu.Lock()
	kept := j.recent[:0]
	for _, ev := range j.recent {
		if keep[ev.Seq] {
			kept = append(kept, ev)
		}
	}
	clear(j.recent[len(kept):])
	j.recent = kept
	j.mu.Unlock()
}

// keepSet reads the journal and returns the sequence numbers to keep.
func (j *journal) keepSet() (map[uint64]bool, error) {
	f, err := os.Open(j.path)
	if err != nil {
		return nil, fmt.Errorf("reading the event journal: %w", err)
	}
	defer f.Close()
	var seqs []uint64
	var macs []string
	var times []time.Time
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		b, err := r.ReadBytes('\n')
		if err != nil {
			break
		}
		var ev struct {
			Seq  uint64    `json:"seq"`
			MAC  string    `json:"mac"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(b, &ev) != nil || ev.Seq == 0 {
			continue
		}
		seqs, macs, times = append(seqs, ev.Seq), append(macs, ev.MAC), append(times, ev.Time)
	}
	keep := map[uint64]bool{}
	perMAC := map[string]int{}
	others := 0
	cutoff := j.keep.now().Add(-j.keep.recent)
	for i := len(seqs) - 1; i >= 0; i-- { // newest first
		switch {
		case times[i].After(cutoff):
			keep[seqs[i]] = true
		case j.keep.planned != nil && j.keep.planned(macs[i]):
			if perMAC[macs[i]] < j.keep.perMAC {
				keep[seqs[i]] = true
			}
		default:
			if others < j.keep.others {
				keep[seqs[i]] = true
			}
		}
		if j.keep.planned != nil && j.keep.planned(macs[i]) {
			perMAC[macs[i]]++
		} else {
			others++
		}
	}
	return keep, nil
}

// rewrite replaces the journal with its header and the events keep
// accepts (temporary file, fsync, rename, fsync of the folder), and
// reopens it for appending. It runs at open and on the writer goroutine.
func (j *journal) rewrite(keep func(api.Event) bool) error {
	in, err := os.Open(j.path)
	if err != nil {
		return fmt.Errorf("reading the event journal: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(j.path), "."+filepath.Base(j.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("compacting the event journal: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	hb, _ := json.Marshal(header{Epoch: j.epoch, Since: time.Now().UTC().Format(time.RFC3339)})
	w.Write(append(hb, '\n'))
	size, n := int64(len(hb)+1), 0
	r := bufio.NewReaderSize(in, 1<<20)
	for {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a torn last line (without its newline) is dropped
		}
		if err != nil {
			tmp.Close()
			return fmt.Errorf("reading the event journal: %w", err)
		}
		var ev api.Event
		if json.Unmarshal(b, &ev) != nil || ev.Seq == 0 || !keep(ev) {
			continue
		}
		w.Write(bytes.TrimRight(b, "\n"))
		w.WriteByte('\n')
		size += int64(len(bytes.TrimRight(b, "\n")) + 1)
		n++
	}
	err = w.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), j.path)
	}
	if err != nil {
		return fmt.Errorf("compacting the event journal: %w", err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		d.Sync()
		d.Close()
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("reopening the event journal: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return fmt.Errorf("reopening the event journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size, j.lines, j.kept = f, size, n, n
	return nil
}
