package bmc

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
)

// One authenticated session per BMC, kept between operations.
//
// Opening an RMCP+ session costs four round trips and the BMC's key
// exchange (RAKP, HMAC-SHA256 on a slow BMC CPU) before the one command an
// operation needs, and closing it one more; an orchestrator driving a rack
// runs several operations per node seconds apart (check, PXE: power state,
// power off, boot flags, power on), and the per-node commands of one
// operation come as separate calls. So a session that worked is kept, per
// BMC address and credentials, for the next operation of any controller in
// the process:
//
//   - it is kept at most Options.SessionIdle after its last use (default
//     20 s), and never past sessionMaxAge (25 s) after its login, then closed, so
//     a session is never held while a node installs, and other tools find
//     the BMC's few session slots free;
//   - while kept it is kept alive: Get Session Info every
//     Options.SessionKeepAlive (default 10 s), well inside IPMI 2.0
//     §6.12.15's 60 s inactivity timeout and inside shorter ones;
//   - a kept session the BMC no longer knows (it reset, or its timeout is
//     shorter still) fails its next command: it is closed and the
//     operation logs in again at once, without counting a try;
//   - a kept session holds one of Options.MaxSessions slots of its BMC, as
//     any session does; an operation that finds one idle takes it with
//     its slot, so kept sessions never add to what the BMC sees;
//   - CloseIdleSessions ends every kept session (a command's exit).
//
// A session is used by one goroutine at a time: the pool hands it out and
// takes it back, and stops its keep-alive before either.

// sessionMaxAge bounds a kept session's life from its login. go-ipmi's
// client runs a keep-alive of its own every 30 s from the login on
// (client.DefaultKeepAliveIntervalSec), which can race with the session's
// close (go-ipmi v0.9.1 then writes to the closed socket and panics); a
// session kept at most this long, then used by one more operation of at
// most TryTimeout, is closed before that first tick with 2 s to spare.
func sessionMaxAge(o Options) time.Duration {
	return time.Duration(client.DefaultKeepAliveIntervalSec)*time.Second - 2*time.Second - o.TryTimeout
}

// sessionKey names a BMC and the credentials of its sessions (the password
// only as a digest).
type sessionKey struct {
	addr string // host:port
	user string
	pass [32]byte
}

type keptSession struct {
	cl     *client.Client
	born   time.Time // its login
	proto  string
	slots  chan struct{}      // the BMC's session slots; the kept session holds one
	timer  *time.Timer        // closes the session when idle too long
	cancel context.CancelFunc // ends the keep-alive
	done   chan struct{}      // closed when the keep-alive has ended
}

var sessionPool = struct {
	sync.Mutex
	m map[sessionKey]*keptSession
}{m: map[sessionKey]*keptSession{}}

// sessionsOpened counts RMCP+/IPMI 1.5 sessions set up by this process:
// what the pool saves is read off it in tests.
var sessionsOpened atomic.Int64

func (c *ipmiController) sessionKey() sessionKey {
	return sessionKey{addr: c.key, user: c.opts.Credentials.User, pass: sha256.Sum256([]byte(c.opts.Credentials.Password))}
}

// session is a session in use, with its login time.
type session struct {
	cl   *client.Client
	born time.Time
}

// takeSession returns the BMC's kept session, if one is idle, with the
// session slot it holds; a zero session otherwise.
func (c *ipmiController) takeSession() session {
	if c.opts.SessionIdle < 0 {
		return session{}
	}
	k := c.sessionKey()
	sessionPool.Lock()
	ks := sessionPool.m[k]
	if ks == nil || !ks.timer.Stop() {
		// None, or its idle timer fired and is closing it.
		sessionPool.Unlock()
		return session{}
	}
	delete(sessionPool.m, k)
	sessionPool.Unlock()
	ks.stopKeepAlive()
	if ks.proto != "" {
		c.learn(ks.proto)
	}
	return session{cl: ks.cl, born: ks.born}
}

// keepSession offers s, which holds a slot of c.sem, to the pool; false
// when the pool has one for this BMC already, keeping is off or s is too
// old, and then the caller closes it and releases its slot.
func (c *ipmiController) keepSession(s session) bool {
	idle := min(c.opts.SessionIdle, sessionMaxAge(c.opts)-time.Since(s.born))
	if c.opts.SessionIdle < 0 || idle <= 0 {
		return false
	}
	k := c.sessionKey()
	c.mu.Lock()
	proto := c.proto
	c.mu.Unlock()
	sessionPool.Lock()
	defer sessionPool.Unlock()
	if sessionPool.m[k] != nil {
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	ks := &keptSession{cl: s.cl, born: s.born, proto: proto, slots: c.sem, cancel: cancel, done: make(chan struct{})}
	ks.timer = time.AfterFunc(idle, func() {
		sessionPool.Lock()
		if sessionPool.m[k] == ks {
			delete(sessionPool.m, k)
		}
		sessionPool.Unlock()
		ks.end()
	})
	sessionPool.m[k] = ks
	go ks.keepAlive(ctx, c.opts.SessionKeepAlive, c.opts.TryTimeout)
	return true
}

// keepAlive sends Get Session Info every interval until ctx ends (the
// session is taken or closed); a BMC that stops answering is left to the
// next operation, which logs in again.
func (ks *keptSession) keepAlive(ctx context.Context, interval, timeout time.Duration) {
	defer close(ks.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		_, _ = ks.cl.GetCurrentSessionInfo(tctx)
		cancel()
	}
}

// stopKeepAlive ends the keep-alive and waits for it: nothing else may
// use the session meanwhile, nor close it under its feet.
func (ks *keptSession) stopKeepAlive() {
	ks.cancel()
	<-ks.done
}

// end closes a kept session that left the pool idle and frees its slot.
func (ks *keptSession) end() {
	ks.stopKeepAlive()
	_ = closeQuietly(ks.cl)
	<-ks.slots
}

// CloseIdleSessions ends every session kept for later operations: a
// command that is about to exit calls it, so the BMCs do not hold its
// sessions until their inactivity timeout.
func CloseIdleSessions() {
	sessionPool.Lock()
	var idle []*keptSession
	for k, ks := range sessionPool.m {
		if ks.timer.Stop() {
			idle = append(idle, ks)
		}
		delete(sessionPool.m, k)
	}
	sessionPool.Unlock()
	var wg sync.WaitGroup
	for _, ks := range idle {
		wg.Add(1)
		go func() { defer wg.Done(); ks.end() }()
	}
	wg.Wait()
}
