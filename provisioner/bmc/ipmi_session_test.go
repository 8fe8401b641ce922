package bmc

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// The kept IPMI session (ipmi_session.go) against go-ipmi's reference BMC
// server: kept across operations and controllers, kept alive, closed when
// idle or when the command ends, and replaced when the BMC forgets it.

// sessionBMC is go-ipmi's BMC server on addr ("127.0.0.1:0" picks a port)
// that counts Get Session Info (keep-alives); stop ends it, as a BMC reset
// does, so a new one on the same port knows none of its sessions.
type sessionBMC struct {
	addr      string
	b         *gobmc.BMC
	keepAlive atomic.Int64
	stop      func()
}

func startSessionBMC(t *testing.T, addr string) *sessionBMC {
	t.Helper()
	b := gobmc.New(gobmc.DeviceInfo{DeviceID: 32, IPMIVersion: 0x02}, [16]byte{1}, mock.New(), gobmc.WithClock(clock.Real))
	u, err := b.Users.Add(2, testUser)
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(testPassword))
	u.Enabled = true
	u.ChannelAccess[1] = gobmc.UserChannelAccess{MaxPrivilege: gobmc.PrivilegeLevelAdministrator, Enabled: true}
	sb := &sessionBMC{b: b}
	reg := handlers.NewRegistry()
	handlers.RegisterAllHandlers(reg)
	full := handlers.NewRegistry()
	handlers.RegisterAllHandlers(full)
	info := types.CommandGetSessionInfo
	reg.RegisterFunc(info, func(ctx context.Context, hctx *handlers.HandlerContext, data []byte) ([]byte, types.CompletionCode, error) {
		sb.keepAlive.Add(1)
		return full.Dispatch(ctx, hctx, uint8(info.NetFn), info.ID, data)
	})
	ua, _ := net.ResolveUDPAddr("udp4", addr)
	pc, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatal(err)
	}
	sb.addr = pc.LocalAddr().String()
	srv := server.NewServer(b, udp.Wrap(pc), server.WithHandlerRegistry(reg))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	sb.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
			t.Logf("go-ipmi server: %v", err)
		}
	}
	t.Cleanup(sb.stop)
	return sb
}

// sessionOpts keeps sessions and lets the test run every operation on a
// controller of its own, as the orchestrator does.
func sessionOpts(t *testing.T) Options {
	o := testOpts(t, nil)
	o.SessionIdle = time.Minute
	t.Cleanup(CloseIdleSessions)
	return o
}

func powerStateOnce(t *testing.T, url string, o Options) error {
	t.Helper()
	c, err := Open(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.PowerState(context.Background())
	return err
}

func TestIPMISessionIsKeptAcrossOperationsAndControllers(t *testing.T) {
	sb := startSessionBMC(t, "127.0.0.1:0")
	url, o := "ipmi://"+sb.addr, sessionOpts(t)
	before := sessionsOpened.Load()
	for range 5 {
		if err := powerStateOnce(t, url, o); err != nil {
			t.Fatal(err)
		}
	}
	c := openTest(t, url, o)
	if err := c.Power(context.Background(), ActionOn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE, Valid: true}); err != nil {
		t.Fatal(err)
	}
	if n := sessionsOpened.Load() - before; n != 1 {
		t.Fatalf("%d sessions opened for 7 operations, want 1 kept", n)
	}
	if n := sb.b.Sessions.Count(); n != 1 {
		t.Errorf("the BMC holds %d sessions, want the kept one", n)
	}
	// Off: a session per operation, each closed.
	o.SessionIdle = -1
	before = sessionsOpened.Load()
	for range 3 {
		if err := powerStateOnce(t, url, o); err != nil {
			t.Fatal(err)
		}
	}
	if n := sessionsOpened.Load() - before; n != 3 {
		t.Errorf("with SessionIdle < 0: %d sessions for 3 operations, want 3", n)
	}
}

// A BMC that resets forgets the session: the next operation logs in again
// at once and succeeds, without a try's backoff.
func TestIPMIForgottenSessionLogsInAgain(t *testing.T) {
	sb := startSessionBMC(t, "127.0.0.1:0")
	url, o := "ipmi://"+sb.addr, sessionOpts(t)
	o.Tries = 1 // a second try would hide a missing re-login
	if err := powerStateOnce(t, url, o); err != nil {
		t.Fatal(err)
	}
	sb.stop()
	startSessionBMC(t, sb.addr) // reset: same address, no sessions
	before := sessionsOpened.Load()
	if err := powerStateOnce(t, url, o); err != nil {
		t.Fatalf("after the BMC forgot the session: %v", err)
	}
	if n := sessionsOpened.Load() - before; n != 1 {
		t.Errorf("%d new sessions, want 1 (the re-login)", n)
	}
}

// A kept session is kept alive while idle, and closed (its slot freed)
// once idle for SessionIdle; CloseIdleSessions closes it at once.
func TestIPMIKeptSessionKeepAliveAndIdleClose(t *testing.T) {
	sb := startSessionBMC(t, "127.0.0.1:0")
	url, o := "ipmi://"+sb.addr, sessionOpts(t)
	o.SessionIdle, o.SessionKeepAlive, o.MaxSessions = 700*time.Millisecond, 100*time.Millisecond, 1
	if err := powerStateOnce(t, url, o); err != nil {
		t.Fatal(err)
	}
	time.Sleep(450 * time.Millisecond)
	if n := sb.keepAlive.Load(); n < 2 {
		t.Errorf("%d keep-alives in 450 ms at one per 100 ms", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sb.b.Sessions.Count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle session was not closed (SessionIdle 700 ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its slot is free: with MaxSessions 1 the next operation does not wait.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := openTest(t, url, o)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatalf("after the idle close: %v", err)
	}
	if sb.b.Sessions.Count() != 1 {
		t.Fatalf("no session kept after the operation")
	}
	CloseIdleSessions()
	if n := sb.b.Sessions.Count(); n != 0 {
		t.Errorf("CloseIdleSessions left %d sessions at the BMC", n)
	}
}

// A session is not kept past sessionMaxAge from its login: go-ipmi's own
// keep-alive starts at 30 s and must never meet the session's close.
func TestIPMIOldSessionIsNotKept(t *testing.T) {
	c, err := Open(context.Background(), "ipmi://127.0.0.1:1", sessionOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	ic := c.(*ipmiController)
	if max := sessionMaxAge(ic.opts); max <= 0 || max+ic.opts.TryTimeout >= 30*time.Second {
		t.Fatalf("sessionMaxAge %s with TryTimeout %s reaches go-ipmi's first keep-alive at 30 s", max, ic.opts.TryTimeout)
	}
	if ic.keepSession(session{born: time.Now().Add(-sessionMaxAge(ic.opts))}) {
		t.Fatal("a session as old as sessionMaxAge was kept")
	}
}
