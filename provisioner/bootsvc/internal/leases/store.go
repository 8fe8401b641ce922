package leases

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// Options tune a Store; the zero value is fine.
type Options struct {
	Logger *slog.Logger
	// MaxBatch bounds how many commits share one fsync (default 1024).
	MaxBatch int
	// CompactAfter is how many journal lines may pile up before the journal
	// is rewritten with only the live leases, provided they are at least
	// four times the live count (default 8192).
	CompactAfter int
	// Now is the clock that decides which leases have expired (default
	// time.Now); tests pass their own.
	Now func() time.Time
}

// Store holds the leases of one serving process: in memory for lookups, in
// the journal for durability. Only one process may hold a state folder's
// store at a time (an exclusive lock), so two servers never hand out the
// same pool address.
type Store struct {
	dir  string
	path string
	log  *slog.Logger
	opts Options

	lock    *os.File
	journal *os.File // appended to by the committer goroutine only
	lines   int      // journal lines since the last compaction
	// size is the journal's length after the last whole batch; torn says
	// a failed write may have left part of a batch after it, which is cut
	// off before anything else is appended (committer goroutine only).
	size      int64
	torn      bool
	lastSweep time.Time

	mu   sync.RWMutex
	live map[string]Lease // what readers see, including commits in flight
	// emu keeps the journal in the order commits were applied to live.
	emu sync.Mutex
	// durable is what the journal holds, kept by the committer alone; a
	// compaction writes it, so it never races with readers.
	durable map[string]Lease

	queue  chan commit
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

type commit struct {
	rec  record
	done func(error)
}

// ErrClosed is what commits get after Close.
var ErrClosed = errors.New("lease store closed")

// Open replays the journal in dir (created if missing) and starts the
// committer. Close it to flush and release the lock.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = 8192
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the state folder %s for leases: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the leases in %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking the leases in %s: another racker serve holds them (%w)", dir, err)
	}
	s := &Store{dir: dir, path: filepath.Join(dir, JournalFile), log: opts.Logger, opts: opts, lock: lock,
		queue: make(chan commit, opts.MaxBatch), closed: make(chan struct{})}
	s.live, err = readJournal(s.path, s.log)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.dropExpired(s.live, opts.Now())
	s.durable = make(map[string]Lease, len(s.live))
	for k, v := range s.live {
		s.durable[k] = v
	}
	// Start from a compact journal: it also drops a torn last line, so
	// appends never continue a half-written record.
	if err := s.compact(); err != nil {
		lock.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.committer()
	return s, nil
}

// Get returns the lease of mac, as recorded (it may have expired since the
// last sweep; Addr is what authorises an address).
func (s *Store) Get(mac string) (Lease, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.live[mac]
	return l, ok
}

// All returns every lease, ordered by MAC.
func (s *Store) All() []Lease {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedLeases(s.live)
}

// Commit records l and calls done once it is durable (or failed). Readers
// see the lease at once; the caller answers the client only from done, so
// an ACK never promises a lease a crash could lose. done runs on the
// committer goroutine and must be quick (send a packet, no disk).
func (s *Store) Commit(l Lease, done func(error)) {
	s.enqueue(record{Lease: l}, done, func() { s.live[l.MAC] = l })
}

// Release forgets the lease of mac (a DHCPRELEASE), durably.
func (s *Store) Release(mac string, done func(error)) {
	s.enqueue(record{Lease: Lease{MAC: mac}, Released: true}, done, func() { delete(s.live, mac) })
}

// Put commits l and waits until it is durable.
func (s *Store) Put(l Lease) error {
	ch := make(chan error, 1)
	s.Commit(l, func(err error) { ch <- err })
	return <-ch
}

func (s *Store) enqueue(rec record, done func(error), apply func()) {
	if done == nil {
		done = func(error) {}
	}
	select {
	case <-s.closed:
		done(ErrClosed)
		return
	default:
	}
	s.emu.Lock()
	defer s.emu.Unlock()
	s.mu.Lock()
	apply()
	s.mu.Unlock()
	select {
	case s.queue <- commit{rec: rec, done: done}:
	case <-s.closed:
		done(ErrClosed)
	}
}

// Close writes what is queued, stops the committer and releases the lock.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.wg.Wait()
	var err error
	if s.journal != nil {
		err = s.journal.Close()
	}
	s.lock.Close()
	return err
}

// committer is the only writer of the journal: it takes every commit that
// is waiting, writes them with one write and one fsync, then answers them
// all. Commits that arrive during an fsync form the next batch, so the
// busier the server, the more commits share each fsync.
func (s *Store) committer() {
	defer s.wg.Done()
	batch := make([]commit, 0, s.opts.MaxBatch)
	var buf []byte
	for {
		var first commit
		select {
		case first = <-s.queue:
		case <-s.closed:
			// Drain what was queued before Close, then stop.
			batch = batch[:0]
			for {
				select {
				case c := <-s.queue:
					batch = append(batch, c)
					if len(batch) == s.opts.MaxBatch {
						s.flush(batch, &buf)
						batch = batch[:0]
					}
				default:
					s.flush(batch, &buf)
					return
				}
			}
		}
		batch = append(batch[:0], first)
		if now := s.opts.Now(); now.Sub(s.lastSweep) > time.Minute {
			s.lastSweep = now
			s.Sweep()
		}
	more:
		for len(batch) < s.opts.MaxBatch {
			select {
			case c := <-s.queue:
				batch = append(batch, c)
			default:
				break more
			}
		}
		s.flush(batch, &buf)
	}
}

func (s *Store) flush(batch []commit, buf *[]byte) {
	if len(batch) == 0 {
		return
	}
	b := (*buf)[:0]
	for _, c := range batch {
		line, err := json.Marshal(c.rec)
		if err != nil { // cannot happen for these types; fail the batch loudly
			s.fail(batch, fmt.Errorf("encoding lease of %s: %w", c.rec.MAC, err))
			return
		}
		b = append(append(b, line...), '\n')
	}
	*buf = b
	err := s.cutTorn()
	if err == nil {
		var n int
		n, err = s.journal.Write(b)
		if n > 0 && err != nil {
			s.torn = true
		}
		if err == nil {
			err = s.journal.Sync()
			s.torn = err != nil // the data may or may not be on disk: cut it
		}
	}
	if err != nil {
		err = fmt.Errorf("writing %d lease(s) to %s: %w", len(batch), s.path, err)
		s.log.Error("lease journal write failed; leases are not being answered", "err", err)
		_ = s.cutTorn() // now if possible, else before the next write
		s.fail(batch, err)
		return
	}
	s.size += int64(len(b))
	s.finish(batch, nil)
	for _, c := range batch {
		if c.rec.Released {
			delete(s.durable, c.rec.MAC)
		} else {
			s.durable[c.rec.MAC] = c.rec.Lease
		}
	}
	s.lines += len(batch)
	if s.lines > s.opts.CompactAfter && s.lines > 4*len(s.durable) {
		if cerr := s.compact(); cerr != nil {
			s.log.Error("compacting the lease journal failed; appending to the old one", "err", cerr)
		}
	}
}

// cutTorn truncates the journal to its last whole batch after a failed
// write, so the next line never continues a half-written one (which would
// lose both, the second one acknowledged).
func (s *Store) cutTorn() error {
	if !s.torn {
		return nil
	}
	if err := s.journal.Truncate(s.size); err != nil {
		return fmt.Errorf("cutting a torn write off %s: %w", s.path, err)
	}
	s.torn = false
	return nil
}

// fail answers a batch that is not durable, and takes its leases back from
// readers: a lease nobody was told about must not authorise anything.
// A later commit of the same MAC, applied since, is left alone.
func (s *Store) fail(batch []commit, err error) {
	s.mu.Lock()
	for _, c := range batch {
		if c.rec.Released {
			continue
		}
		if cur, ok := s.live[c.rec.MAC]; ok && cur == c.rec.Lease {
			if d, ok := s.durable[c.rec.MAC]; ok {
				s.live[c.rec.MAC] = d
			} else {
				delete(s.live, c.rec.MAC)
			}
		}
	}
	s.mu.Unlock()
	s.finish(batch, err)
}

func (s *Store) finish(batch []commit, err error) {
	for _, c := range batch {
		c.done(err)
	}
}

// compact replaces the journal with one line per live lease (atomically:
// temporary file, fsync, rename, fsync of the folder) and reopens it for
// appending. It runs at Open and on the committer goroutine only.
func (s *Store) compact() error {
	s.dropExpired(s.durable, s.opts.Now())
	leases := sortedLeases(s.durable)
	var b []byte
	for _, l := range leases {
		line, err := json.Marshal(record{Lease: l})
		if err != nil {
			return fmt.Errorf("encoding lease of %s: %w", l.MAC, err)
		}
		b = append(append(b, line...), '\n')
	}
	if err := atomicfile.Write(s.path, b, 0o644); err != nil {
		return fmt.Errorf("compacting the lease journal: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the lease journal %s: %w", s.path, err)
	}
	if s.journal != nil {
		s.journal.Close()
	}
	s.journal = f
	s.lines = len(leases)
	s.size, s.torn = int64(len(b)), false
	return nil
}

// Sweep drops expired leases from memory (the journal forgets them at its
// next compaction, and a restart never reads them back). The committer
// runs it about once a minute.
func (s *Store) Sweep() {
	now := s.opts.Now()
	s.mu.Lock()
	s.dropExpired(s.live, now)
	s.mu.Unlock()
}

func (s *Store) dropExpired(m map[string]Lease, now time.Time) {
	for mac, l := range m {
		if !l.Expires.IsZero() && !l.Expires.After(now) {
			delete(m, mac)
		}
	}
}

// Addr is the address currently leased to mac: only a lease that has not
// expired counts, so an address given up (or timed out) never authorises
// its former holder, or whoever takes it next.
func (s *Store) Addr(mac string) (netip.Addr, bool) {
	l, ok := s.Get(mac)
	if !ok || (!l.Expires.IsZero() && !l.Expires.After(s.opts.Now())) {
		return netip.Addr{}, false
	}
	return l.IP, true
}
