package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// The ipmi driver talks RMCP+ (IPMI 2.0 "lanplus") with cipher suites 17
// (HMAC-SHA256, AES) and 3 (HMAC-SHA1, AES). Suite 0 (no authentication) is
// never offered, and IPMI 1.5 only on request, never after a BMC spoke
// lanplus, and never with straight-password authentication
// (ipmi_downgrade.go).
//
// An operation runs its commands in the BMC's kept session or a new one;
// a session that worked is kept for the next operation for a short idle
// time, kept alive meanwhile, and never held while a node installs
// (ipmi_session.go). A process-wide semaphore per BMC address bounds
// concurrent sessions, kept ones included (Options.MaxSessions).

// cipherSuites are offered in this order.
var cipherSuites = []types.CipherSuiteID{types.CipherSuiteID17, types.CipherSuiteID3}

type ipmiController struct {
	host string
	port int
	addr string // for messages: host, or host:port when not 623
	key  string // host:port, the identity of the BMC in this process
	opts Options
	sem  chan struct{}

	mu      sync.Mutex
	proto   string       // protoLanplus or protoLan once a session worked
	console *ipmiConsole // this controller's open SOL session
}

// sessionSlots is one semaphore per BMC address, shared by every controller
// in the process.
var sessionSlots = struct {
	sync.Mutex
	m map[string]chan struct{}
}{m: map[string]chan struct{}{}}

func slotsFor(addr string, n int) chan struct{} {
	sessionSlots.Lock()
	defer sessionSlots.Unlock()
	s, ok := sessionSlots.m[addr]
	if !ok {
		s = make(chan struct{}, n)
		sessionSlots.m[addr] = s
	}
	return s
}

func openIPMI(u *url.URL, opts Options) (Controller, error) {
	host, port := u.Hostname(), 623
	if host == "" {
		return nil, fmt.Errorf("%sBMC URL %q: no host", nodePrefix(opts.Node), u.Redacted())
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		// go-ipmi v0.9.1 joins host and port without brackets.
		return nil, fmt.Errorf("%sBMC URL %q: IPv6 BMC addresses are not supported; use the BMC's IPv4 address", nodePrefix(opts.Node), u.Redacted())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%sBMC URL %q: bad port %q", nodePrefix(opts.Node), u.Redacted(), p)
		}
		port = n
	}
	addr := host
	if port != 623 {
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return &ipmiController{
		host: host, port: port, addr: addr, opts: opts,
		key: net.JoinHostPort(host, strconv.Itoa(port)),
		sem: slotsFor(net.JoinHostPort(host, strconv.Itoa(port)), opts.MaxSessions),
	}, nil
}

// fail builds the one-line error every caller sees: node, BMC, what was being done, why.
func (c *ipmiController) fail(what string, err error) error {
	return fmt.Errorf("%sBMC %s: %s: %w", nodePrefix(c.opts.Node), c.addr, what, err)
}

// Session protocols, learned per controller on the first session.
const (
	protoLanplus = "lanplus"
	protoLan     = "lan" // IPMI 1.5
)

// connect opens one authenticated session: IPMI 2.0 lanplus first; IPMI
// 1.5 only with Options.AllowIPMI15, when the BMC answers the (1.5-framed)
// capabilities request but opens no RMCP+ session, as a 1.5-only BMC does,
// and never for a BMC that has spoken lanplus before (this controller, or
// any process sharing Options.Protocols): a lanplus failure cannot
// downgrade security. Each attempt gets its own TryTimeout within ctx.
func (c *ipmiController) connect(ctx context.Context) (*client.Client, error) {
	c.mu.Lock()
	proto := c.proto
	c.mu.Unlock()
	if proto == "" {
		known, err := c.opts.Protocols.Protocol(c.key)
		if err != nil {
			return nil, fmt.Errorf("reading which protocol the BMC spoke before: %w", err)
		}
		proto = known
	}
	if proto != protoLan || !c.opts.AllowIPMI15 {
		cl, err := c.connectWith(ctx, client.InterfaceLanplus)
		if err == nil {
			c.learn(protoLanplus)
			return cl, nil
		}
		switch {
		case proto == protoLanplus:
			return nil, permanentError{fmt.Errorf("%w: the BMC spoke IPMI 2.0 before and opens no IPMI 2.0 session now (someone answering in its place?): %v", ErrDowngrade, err)}
		case isAuthError(err) || errors.Is(err, ErrAuth) || !answeredCapabilities(err) || ctx.Err() != nil:
			return nil, err
		case !c.opts.AllowIPMI15:
			return nil, permanentError{fmt.Errorf("the BMC opens no IPMI 2.0 session, and IPMI 1.5 is off (--ipmi-allow-v15 allows it for BMCs without IPMI 2.0): %w", err)}
		}
		c.opts.Logger.Debug("BMC opened no IPMI 2.0 session; trying IPMI 1.5", "node", c.opts.Node, "bmc", c.addr, "err", err)
	}
	cl, err := c.connectWith(ctx, client.InterfaceLan)
	if err == nil {
		c.learn(protoLan)
	}
	if errors.Is(err, ErrDowngrade) {
		err = permanentError{err} // asking again sends nothing better
	}
	return cl, err
}

func (c *ipmiController) learn(proto string) {
	c.mu.Lock()
	changed := c.proto != proto
	c.proto = proto
	c.mu.Unlock()
	if changed {
		c.opts.Logger.Debug("BMC session protocol", "node", c.opts.Node, "bmc", c.addr, "protocol", proto)
		if err := c.opts.Protocols.Learned(c.key, proto); err != nil {
			c.opts.Logger.Warn("could not remember the BMC's protocol", "bmc", c.addr, "err", err)
		}
	}
}

// answeredCapabilities says whether a failed lanplus setup got past Get
// Channel Authentication Capabilities, i.e. the BMC is there and speaks
// IPMI 1.5 at least.
func answeredCapabilities(err error) bool {
	return !strings.Contains(err.Error(), "Get Channel Authentication Capabilities failed")
}

func (c *ipmiController) connectWith(ctx context.Context, intf client.Interface) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.TryTimeout)
	defer cancel()
	cl, err := client.NewClient(c.host, c.port, c.opts.Credentials.User, c.opts.Credentials.Password)
	if err != nil {
		// The only error is a user name longer than 16 bytes; never echo it.
		return nil, fmt.Errorf("user name in ipmi_user is too long for IPMI (16 bytes at most): %w", ErrAuth)
	}
	// Each packet gets a third of the try; go-ipmi resends once before the
	// try's deadline ends it.
	cl.WithInterface(intf).WithTimeout(c.opts.TryTimeout / 3).WithRetry(1).WithCipherSuiteID(cipherSuites...)
	cl.WithUDPProxy(guardDialer{lanplus: intf == client.InterfaceLanplus})
	cl.WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	if err := cl.Connect(ctx); err != nil {
		// No session to close: a cancelled context makes go-ipmi skip the
		// Close Session exchange and only release its socket.
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = cl.Close(dead)
		return nil, err
	}
	sessionsOpened.Add(1)
	return cl, nil
}

// closeQuietly ends a session; a BMC that does not answer Close Session
// lets its own timer do it.
func closeQuietly(cl *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return cl.Close(ctx)
}

// do runs fn in a session — the BMC's kept one (ipmi_session.go) or a new
// one — retrying with backoff when the BMC does not answer. Authentication
// failures and IPMI completion codes (the BMC answered "no") end at once.
// A kept session that fails is closed and fn runs again at once in a new
// one (the BMC may have dropped it), without counting a try.
func (c *ipmiController) do(ctx context.Context, what string, fn func(ctx context.Context, cl *client.Client) error, opts ...doOption) error {
	keep := len(opts) > 0 && opts[0] == keepSession
	// An operation takes the BMC's kept session with the slot it holds.
	// One that keeps its own (the console) ends the kept one first: BMCs
	// limit the sessions of one user, some to one.
	kept := c.takeSession()
	if keep && kept.cl != nil {
		_ = closeQuietly(kept.cl)
		kept = session{}
		<-c.sem
	}
	if kept.cl == nil {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return c.fail(what, fmt.Errorf("waiting for a free session slot: %w", ctx.Err()))
		}
	}
	start := time.Now()
	backoff := c.opts.Backoff
	var lastErr error
	slotHeld := true
	defer func() {
		if slotHeld {
			<-c.sem
		}
	}()
	for try := 1; try <= c.opts.Tries; try++ {
		reused := kept.cl != nil
		handedOff, err := c.try(ctx, kept, fn, keep)
		kept = session{}
		if err == nil {
			slotHeld = !handedOff
			return nil
		}
		lastErr = err
		if isAuthError(err) || errors.Is(err, ErrAuth) {
			c.opts.Logger.Debug("BMC refused the credentials", "node", c.opts.Node, "bmc", c.addr, "detail", err)
			return c.fail(what, ErrAuth)
		}
		var perm permanentError
		cc, answered := completionCode(err)
		if (answered && !transientCode(cc)) || errors.As(err, &perm) {
			return c.fail(what, err)
		}
		if ctx.Err() != nil {
			return c.fail(what, fmt.Errorf("%w after %d tries in %s", ctx.Err(), try, roundDur(time.Since(start))))
		}
		if reused && !answered {
			c.opts.Logger.Debug("kept BMC session failed; logging in again", "node", c.opts.Node, "bmc", c.addr, "op", what, "err", err)
			try--
			continue
		}
		c.opts.Logger.Debug("BMC try failed", "node", c.opts.Node, "bmc", c.addr, "op", what, "try", try, "err", err)
		if try < c.opts.Tries {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff *= 2
		}
	}
	if isTimeout(lastErr) {
		return c.fail(what, fmt.Errorf("%w after %d tries in %s", ErrNoAnswer, c.opts.Tries, roundDur(time.Since(start))))
	}
	return c.fail(what, fmt.Errorf("failed after %d tries in %s: %w", c.opts.Tries, roundDur(time.Since(start)), lastErr))
}

// doOption changes how do treats the session.
type doOption int

// keepSession leaves the session open and its slot taken when fn succeeds:
// the caller (the console) owns both and releases them itself.
const keepSession doOption = 1

// try runs fn in s (zero: a new session). On success the session goes to
// the caller (keep, the console) or to the pool of kept sessions, which
// then holds its slot (handedOff); on failure it is closed.
func (c *ipmiController) try(ctx context.Context, s session, fn func(ctx context.Context, cl *client.Client) error, keep bool) (handedOff bool, err error) {
	if s.cl == nil {
		if s.cl, err = c.connect(ctx); err != nil {
			return false, err
		}
		s.born = time.Now()
	}
	tctx, cancel := context.WithTimeout(ctx, c.opts.TryTimeout)
	defer cancel()
	if err = fn(tctx, s.cl); err != nil {
		_ = closeQuietly(s.cl)
		return false, err
	}
	if keep || c.keepSession(s) {
		return true, nil
	}
	_ = closeQuietly(s.cl)
	return false, nil
}

func roundDur(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func (c *ipmiController) PowerState(ctx context.Context) (PowerState, error) {
	var s PowerState
	err := c.do(ctx, "reading power state", func(ctx context.Context, cl *client.Client) error {
		var err error
		s, err = powerState(ctx, cl)
		return err
	})
	return s, err
}

func powerState(ctx context.Context, cl *client.Client) (PowerState, error) {
	st, err := cl.GetChassisStatus(ctx)
	if err != nil {
		return "", fmt.Errorf("get chassis status: %w", err)
	}
	if st.PowerIsOn {
		return PowerOn, nil
	}
	return PowerOff, nil
}

// Power sends a chassis control. "cycle" on a node that is off powers it
// on (many BMCs refuse a power cycle when off, and the caller wants the
// node to boot either way); "reset" on a node that is off is an error.
func (c *ipmiController) Power(ctx context.Context, a PowerAction) error {
	var ctl chassis.ChassisControl
	switch a {
	case ActionOn:
		ctl = chassis.ChassisControlPowerUp
	case ActionOff:
		ctl = chassis.ChassisControlPowerDown
	case ActionCycle:
		ctl = chassis.ChassisControlPowerCycle
	case ActionReset:
		ctl = chassis.ChassisControlHardReset
	case ActionSoftOff:
		ctl = chassis.ChassisControlSoftShutdown
	default:
		return c.fail("power", fmt.Errorf("unknown action %q (want on, off, soft-off, cycle or reset)", a))
	}
	return c.do(ctx, "power "+string(a), func(ctx context.Context, cl *client.Client) error {
		if a == ActionCycle || a == ActionReset {
			s, err := powerState(ctx, cl)
			if err != nil {
				return err
			}
			if s == PowerOff {
				if a == ActionReset {
					return permanentError{errors.New("node is off; use power on")}
				}
				ctl = chassis.ChassisControlPowerUp
			}
		}
		if _, err := cl.ChassisControl(ctx, ctl); err != nil {
			return fmt.Errorf("chassis control %d: %w", ctl, err)
		}
		return nil
	})
}

func (c *ipmiController) Close() error {
	c.mu.Lock()
	con := c.console
	c.mu.Unlock()
	if con != nil {
		return con.Close()
	}
	return nil
}

// permanentError ends do's retries: asking again cannot change the answer.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }
