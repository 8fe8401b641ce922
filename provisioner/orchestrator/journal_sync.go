package orchestrator

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The syncer makes the journal durable off the loop: the loop writes a
// line and asks for the operations it decided to start to be started once
// the line is on disk; the syncer takes every request waiting, covers them
// with one fdatasync, then starts their operations. The loop goes on
// applying what the nodes and BMCs report in the meantime, and an
// operation still never starts before the state that calls for it is
// durable. An fdatasync that fails stops the run at its next commit; the
// operations waiting for it are told they are not to start.

type syncer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []syncRequest
	busy    bool // a batch is being synced
	err     error
	stopped bool
	done    chan struct{}

	syncs    int
	syncTime time.Duration
}

type syncRequest struct {
	f     *os.File // the journal the lines went to
	start []func(ok bool)
}

func startSyncer() *syncer {
	s := &syncer{done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.run()
	return s
}

func (s *syncer) request(f *os.File, start []func(ok bool)) {
	s.mu.Lock()
	s.queue = append(s.queue, syncRequest{f: f, start: start})
	s.mu.Unlock()
	s.cond.Broadcast()
}

// idle: nothing waits to be synced.
func (s *syncer) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) == 0 && !s.busy
}

// failed returns the error of a failed fdatasync, if one failed.
func (s *syncer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// drain waits until every request so far is synced (and its operations
// started).
func (s *syncer) drain() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for (len(s.queue) > 0 || s.busy) && s.err == nil {
		s.cond.Wait()
	}
	return s.err
}

// stop drains and ends the syncer.
func (s *syncer) stop() error {
	err := s.drain()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
	<-s.done
	return err
}

func (s *syncer) counts() (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs, s.syncTime
}

func (s *syncer) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.stopped {
			s.cond.Wait()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.busy = nil, true
		s.mu.Unlock()

		began := time.Now()
		var err error
		synced := map[*os.File]bool{}
		for _, r := range batch {
			if r.f != nil && !synced[r.f] {
				synced[r.f] = true
				if e := unix.Fdatasync(int(r.f.Fd())); e != nil && err == nil {
					err = fmt.Errorf("syncing the state journal %s: %w", r.f.Name(), e)
				}
			}
		}
		// Started once synced; told not to start (ok false) otherwise, so
		// whoever waits for them is released.
		for _, r := range batch {
			for _, f := range r.start {
				f(err == nil)
			}
		}
		s.mu.Lock()
		s.busy = false
		s.syncs++
		s.syncTime += time.Since(began)
		if err != nil && s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
		s.cond.Broadcast()
	}
}
