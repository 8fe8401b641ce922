package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Sizes of what the hub keeps of the event journal: the stream a new page
// starts with, and the last events of each node for its panel.
const (
	keepEvents        = 500
	keepEventsPerNode = 40
	sendEventsOnJoin  = 200
	// maxOtherMACs bounds the machines outside the rack whose events are
	// kept per MAC: a rogue on the wire that makes up MACs must not grow
	// the view's memory without end. The rack's own are always kept.
	maxOtherMACs = 256
	// maxWatchers bounds the pages that watch at once; each costs a
	// goroutine and a buffered channel.
	maxWatchers = 64
)

// hub is the single reader behind every watching page: one status merge
// per refresh and one event long poll, however many pages are open, fanned
// out as pre-encoded Server-Sent Events messages. A page too slow to take
// its messages is dropped; its browser reconnects and starts from a fresh
// snapshot, so nothing it shows is stale.
type hub struct {
	src  Source
	log  *slog.Logger
	poll time.Duration
	now  func() time.Time

	collectMu sync.Mutex // one status merge at a time

	mu       sync.Mutex
	watchers map[chan []byte]struct{}
	rack     *Rack
	rackJSON []byte
	rackAt   time.Time
	events   []api.Event            // the last keepEvents, oldest first
	byMAC    map[string][]api.Event // the last keepEventsPerNode per node
	lastSeq  uint64
	others   int           // MACs outside the rack in byMAC
	wake     chan struct{} // a refresh is wanted now
}

func newHub(src Source, poll time.Duration, log *slog.Logger) *hub {
	return &hub{src: src, log: log, poll: poll, now: time.Now, watchers: map[chan []byte]struct{}{},
		byMAC: map[string][]api.Event{}, wake: make(chan struct{}, 1)}
}

// run follows the event journal and, while pages watch, refreshes the
// status every poll and right after an event; until ctx ends.
func (h *hub) run(ctx context.Context) {
	go h.followEvents(ctx)
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			for c := range h.watchers {
				close(c)
				delete(h.watchers, c)
			}
			h.mu.Unlock()
			return
		case <-t.C:
		case <-h.wake:
		}
		h.mu.Lock()
		n := len(h.watchers)
		h.mu.Unlock()
		if n == 0 {
			continue
		}
		if _, err := h.refresh(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("rack view: reading the status failed", "err", err)
		}
	}
}

// refresh merges the status again and sends it to the watchers when it
// changed.
func (h *hub) refresh(ctx context.Context) (*Rack, error) {
	h.collectMu.Lock()
	defer h.collectMu.Unlock()
	p, st, err := h.src.Rack(ctx)
	if err != nil {
		return nil, err
	}
	r := buildRack(p, st, h.now())
	if p == nil {
		r.Problem = "no plan: nodes.csv could not be read when racker serve started; showing the recorded state only"
	}
	// Compare without the clock, which changes every time.
	cmp := r
	cmp.Now = time.Time{}
	key, err := json.Marshal(cmp)
	if err != nil {
		return nil, fmt.Errorf("encoding the rack view: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.rack
	h.rack, h.rackAt = &r, h.now()
	if prev != nil && bytes.Equal(key, h.rackJSON) {
		return &r, nil
	}
	h.rackJSON = key
	h.broadcast(sse("rack", r))
	return &r, nil
}

// current returns a view no older than the poll interval, merging anew
// when the last one is older (nobody watched).
func (h *hub) current(ctx context.Context) (Rack, error) {
	h.mu.Lock()
	r, at := h.rack, h.rackAt
	h.mu.Unlock()
	if r != nil && h.now().Sub(at) < h.poll {
		out := *r
		out.Now = h.now().UTC()
		return out, nil
	}
	nr, err := h.refresh(ctx)
	if err != nil {
		return Rack{}, err
	}
	return *nr, nil
}

// followEvents long-polls the boot services' journal: first its history
// (pages come back at once), then new events as they happen.
func (h *hub) followEvents(ctx context.Context) {
	// Know the rack first, so its nodes' events are kept whatever else
	// the history holds.
	if _, err := h.refresh(ctx); err != nil && ctx.Err() == nil {
		h.log.Debug("rack view: no status yet", "err", err)
	}
	backoff := time.Second
	for ctx.Err() == nil {
		h.mu.Lock()
		after := h.lastSeq
		h.mu.Unlock()
		evs, err := h.src.Events(ctx, after, 25*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Debug("rack view: boot services' events not answering; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 15*time.Second)
			continue
		}
		backoff = time.Second
		h.addEvents(evs)
	}
}

func (h *hub) addEvents(evs []api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	known := map[string]bool{}
	if h.rack != nil {
		for _, u := range h.rack.Units {
			known[u.PrimaryMAC], known[u.BMCMAC] = true, true
		}
	}
	for _, e := range evs {
		if e.Seq <= h.lastSeq {
			continue
		}
		h.lastSeq = e.Seq
		h.events = append(h.events, e)
		if _, kept := h.byMAC[e.MAC]; !kept && !known[e.MAC] {
			if h.others >= maxOtherMACs {
				continue
			}
			h.others++
		}
		per := append(h.byMAC[e.MAC], e)
		if len(per) > keepEventsPerNode {
			per = append(per[:0:0], per[len(per)-keepEventsPerNode:]...)
		}
		h.byMAC[e.MAC] = per
	}
	if len(h.events) > 2*keepEvents {
		h.events = append(h.events[:0:0], h.events[len(h.events)-keepEvents:]...)
	}
	h.broadcast(sse("ev", evs))
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// nodeEvents returns the last events of a node and of its BMC, oldest
// first.
func (h *hub) nodeEvents(mac, bmcMAC string) []api.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]api.Event{}, h.byMAC[mac]...)
	if bmcMAC != "" && bmcMAC != mac {
		out = append(out, h.byMAC[bmcMAC]...)
		sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
		if len(out) > keepEventsPerNode {
			out = out[len(out)-keepEventsPerNode:]
		}
	}
	return out
}

// watch adds a page: it gets the current view and the last events, then
// every change. The channel closes when the hub drops the page (too slow)
// or stops; cancel removes it.
func (h *hub) watch(ctx context.Context) (<-chan []byte, func(), error) {
	r, err := h.current(ctx)
	if err != nil {
		return nil, nil, err
	}
	c := make(chan []byte, 64)
	h.mu.Lock()
	if len(h.watchers) >= maxWatchers {
		h.mu.Unlock()
		return nil, nil, errTooManyWatchers
	}
	c <- sse("rack", r)
	evs := h.events
	if len(evs) > sendEventsOnJoin {
		evs = evs[len(evs)-sendEventsOnJoin:]
	}
	c <- sse("ev", evs)
	h.watchers[c] = struct{}{}
	h.mu.Unlock()
	cancel := func() {
		h.mu.Lock()
		if _, ok := h.watchers[c]; ok {
			delete(h.watchers, c)
			close(c)
		}
		h.mu.Unlock()
	}
	return c, cancel, nil
}

var errTooManyWatchers = fmt.Errorf("more than %d pages watch the rack view", maxWatchers)

// broadcast sends a message to every watcher; h.mu is held.
func (h *hub) broadcast(msg []byte) {
	for c := range h.watchers {
		select {
		case c <- msg:
		default:
			delete(h.watchers, c)
			close(c)
		}
	}
}

// sse encodes one Server-Sent Events message (JSON never holds a raw
// newline, so one data line carries it).
func sse(event string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte("null")
	}
	out := make([]byte, 0, len(b)+len(event)+16)
	out = append(out, "event: "...)
	out = append(out, event...)
	out = append(out, "\ndata: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}
