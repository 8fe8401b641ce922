package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// TestJournalStaysBoundedUnderAFlood: events of MACs nobody planned (a
// flood of random MACs) are compacted away beyond the last few thousand
// once they are older than the recent window; a planned node keeps its
// last events, and sequence numbers go on.
func TestJournalStaysBoundedUnderAFlood(t *testing.T) {
	r := newRig(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	r.srv.store.now = clock
	r.srv.store.j.keep.now = clock
	r.srv.store.j.keep.every = 3000
	r.srv.store.strangers = newLimiter(0, 1<<30) // what the limits let through over hours, at once
	rec := r.srv.Recorder()
	rec.Record(api.Event{Time: now, MAC: macA, Kind: api.KindDHCP, Message: "the planned node, long ago"})
	old := now
	now = now.Add(2 * time.Hour) // what follows is older than the recent window by the end
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ { // concurrent recorders share fsyncs, as DHCP's do
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 12000; i += 64 {
				rec.Record(api.Event{Time: old, MAC: fmt.Sprintf("02:ee:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff), Kind: api.KindMachineSeen,
					Message: "type=discover arch=0"})
			}
		}()
	}
	wg.Wait()
	st, _ := os.Stat(filepath.Join(r.state, EventsFile))
	evs := r.allEvents()
	if len(evs) > 2048+3000+1 || st.Size() > 4<<20 {
		t.Fatalf("after 12000 flood events the journal holds %d events, %d bytes", len(evs), st.Size())
	}
	if evs[0].MAC != macA || evs[0].Seq != 1 {
		t.Errorf("the planned node's event was compacted away: first is %+v", evs[0])
	}
	last := evs[len(evs)-1]
	rec.Record(api.Event{MAC: macB, Kind: api.KindDHCP})
	if got := r.events(last.Seq); len(got) != 1 || got[0].Seq != last.Seq+1 || got[0].Epoch != last.Epoch || last.Epoch == "" {
		t.Errorf("after compaction: %d events after %d (epoch %q)", len(got), last.Seq, last.Epoch)
	}
	// The compacted journal replays.
	r.stop()
	r.start()
	if again := r.allEvents(); len(again) != len(evs)+1 || again[0].Epoch != last.Epoch {
		t.Errorf("after a restart: %d events (want %d), epoch %q", len(again), len(evs)+1, again[0].Epoch)
	}
}

// TestDeletedJournalStartsANewEpoch: a reader whose cursor names the old
// epoch gets the new journal from its start, though its sequence numbers
// are far below the cursor's.
func TestDeletedJournalStartsANewEpoch(t *testing.T) {
	r := newRig(t)
	for i := 0; i < 50; i++ {
		r.srv.Recorder().Record(api.Event{MAC: bmcA, Kind: api.KindTFTP})
	}
	evs := r.events(0)
	old := evs[len(evs)-1]
	r.stop()
	os.Remove(filepath.Join(r.state, EventsFile))
	r.start()
	r.srv.Recorder().Record(api.Event{MAC: macB, Kind: api.KindDHCP})
	c := api.NewClient(r.http.URL)
	got, err := c.EventsIn(context.Background(), old.Epoch, old.Seq, 0)
	if err != nil || len(got) != 1 || got[0].Seq != 1 || got[0].MAC != macB || got[0].Epoch == old.Epoch || got[0].Epoch == "" {
		t.Fatalf("reading with the old cursor (%s, %d): %+v %v", old.Epoch, old.Seq, got, err)
	}
	if same, _ := c.EventsIn(context.Background(), got[0].Epoch, 1, 0); len(same) != 0 {
		t.Errorf("the new epoch's cursor reads again: %+v", same)
	}
}

// allEvents pages through the whole journal.
func (r *rig) allEvents() []api.Event {
	r.t.Helper()
	var all []api.Event
	after := uint64(0)
	for {
		page := r.events(after)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// TestStrangersAreRecordedBounded: TFTP transfers and iPXE requests of
// machines outside the plan, and of nodes outside their window, are
// recorded once per kind and MAC per 10 s; a planned BMC's are not limited.
func TestStrangersAreRecordedBounded(t *testing.T) {
	r := newRig(t)
	rec := r.srv.Recorder()
	for i := 0; i < 100; i++ {
		rec.Record(api.Event{MAC: macA, Kind: api.KindTFTP})                // a node outside its window
		rec.Record(api.Event{MAC: "02:99:00:00:00:01", Kind: api.KindTFTP}) // a stranger
		rec.Record(api.Event{MAC: bmcA, Kind: api.KindDHCP})                // a planned BMC
	}
	got := map[string]int{}
	for _, e := range r.allEvents() {
		got[e.MAC]++
	}
	if got[macA] != 1 || got["02:99:00:00:00:01"] != 1 || got[bmcA] != 100 {
		t.Errorf("recorded per MAC: %v, want 1, 1 and 100", got)
	}
}
