package web

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Refusals. A request that may not have what it asks for (a config outside
// the node's window or from another address, a callback without the
// node's token, a management view from a node) changes nothing. Its
// source gets one 403 and one forbidden event per refusalEvery; while it
// keeps asking within that time it gets 429 and nothing is written, so a
// flood costs the journal one line per source and interval, and all
// sources together at most globalRefusals a second. What was not recorded
// is counted, and said in the next event recorded for that source.

const (
	refusalEvery   = 10 * time.Second
	globalRefusals = 20 // events per second, all sources
	maxTracked     = 10000
)

// limiter lets one event per key and interval through, and at most
// perSecond a second overall; it counts what it holds back.
type limiter struct {
	mu        sync.Mutex
	every     time.Duration
	perSecond int
	last      map[string]time.Time
	held      map[string]int
	second    time.Time
	inSecond  int
}

func newLimiter(every time.Duration, perSecond int) *limiter {
	return &limiter{every: every, perSecond: perSecond, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow says whether an event for key may be recorded at now, and how many
// were held back for key since the last one.
func (l *limiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		l.hold(key)
		return false, 0
	}
	if now.Sub(l.second) >= time.Second {
		l.second, l.inSecond = now, 0
	}
	if l.inSecond >= l.perSecond {
		l.hold(key)
		return false, 0
	}
	l.inSecond++
	if len(l.last) >= maxTracked { // bound the memory a flood of keys takes
		clear(l.last)
		clear(l.held)
	}
	l.last[key] = now
	n := l.held[key]
	delete(l.held, key)
	return true, n
}

func (l *limiter) hold(key string) {
	if len(l.held) < maxTracked {
		l.held[key]++
	}
}

// refuse answers a refused request: 403 and a forbidden event when the
// source's budget allows, else 429 and only a metric. The connection is
// closed either way.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, mac, what string) {
	from := remoteAddr(r)
	w.Header().Set("Connection", "close")
	ok, held := s.refusals.allow(from.String(), s.store.now())
	s.metrics.Dropped("http_refused")
	if !ok {
		writeError(w, http.StatusTooManyRequests, "refused; too many refused requests from "+from.String())
		return
	}
	msg := what + " from " + from.String()
	if held > 0 {
		msg += fmt.Sprintf(" (and %d more refused from there since the last one recorded)", held)
	}
	s.log.Warn("refused a request", "mac", mac, "what", what, "from", r.RemoteAddr, "held_back", held)
	s.record(r, api.Event{MAC: mac, Kind: api.KindForbidden, Message: msg})
	writeError(w, http.StatusForbidden, what)
}

// fromManagement guards the management views and operations: only the
// management node itself (loopback, or its own address) may read the
// journal and the node list or change a node's target.
func (s *Server) fromManagement(w http.ResponseWriter, r *http.Request) bool {
	if s.isAdmin(r) {
		return true
	}
	s.refuse(w, r, "", r.Method+" "+r.URL.Path+" is for the management node only")
	return false
}
