package bmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"
)

// The redfish driver talks DMTF Redfish over HTTPS to a BMC's one computer
// system. Unlike IPMI, a Redfish session is cheap to keep and BMCs count
// them against a small limit, so a controller logs in on its first
// operation, keeps the session, logs in again when the BMC says it expired
// (idle sessions end after SessionTimeout), and deletes it on Close. TLS
// is always on; the certificate is pinned on first use (tlspin.go).
//
// The system is the one in the URL's path (redfish://bmc/redfish/v1/Systems/X,
// as Metal3 spells it) or, without a path, the only member of the Systems
// collection; a BMC with several systems must be told which.

// redfishTryTimeout bounds one attempt unless Options.TryTimeout is set.
const redfishTryTimeout = 20 * time.Second

// ErrNoConsole is wrapped by Console on drivers that have no serial
// console: Redfish defines none a client can attach to. The caller may
// fall back to IPMI SOL on the same BMC.
var ErrNoConsole = errors.New("Redfish offers no serial console (use IPMI serial-over-LAN on the same BMC, ipmi://HOST, if it answers IPMI)")

type redfishController struct {
	base     string // https://host:port
	hostPort string // host:port, as in URLs the BMC gives
	addr     string // for messages: host, or host:port when not 443
	key      string // host:port, the identity of the BMC for pins and slots
	opts     Options
	http     *http.Client
	sem      chan struct{}

	rootMu sync.Mutex
	root   *rootLinks

	authMu sync.Mutex
	auth   authState

	sysMu  sync.Mutex
	system string // the system's path, from the URL or learned

	tlsKey atomic.Value // string: the pinned key the BMC last showed
}

// tlsState says how the certificate is checked, for Diag.
func (c *redfishController) tlsState() string {
	if c.opts.Insecure {
		return "not checked (insecure)"
	}
	if k, ok := c.tlsKey.Load().(string); ok {
		return "pinned " + k
	}
	return "pinned on first use"
}

func openRedfish(u *url.URL, opts Options) (Controller, error) {
	host, port := u.Hostname(), 443
	if host == "" {
		return nil, fmt.Errorf("%sBMC URL %q: no host", nodePrefix(opts.Node), u.Redacted())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%sBMC URL %q: bad port %q", nodePrefix(opts.Node), u.Redacted(), p)
		}
		port = n
	}
	system := strings.TrimSuffix(u.Path, "/")
	if system != "" && !strings.HasPrefix(system, "/redfish/v1/Systems/") {
		return nil, fmt.Errorf("%sBMC URL %q: the path must name a system, /redfish/v1/Systems/ID, or be empty", nodePrefix(opts.Node), u.Redacted())
	}
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	c := &redfishController{
		base: "https://" + hp, hostPort: hp, key: hp, addr: host, opts: opts, system: system,
		sem: slotsFor("redfish/"+hp, opts.MaxSessions),
	}
	if port != 443 {
		c.addr = hp
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	if !opts.Insecure {
		tlsConf.VerifyConnection = pinVerifier(opts.Pins, hp, func(fp string, first bool) {
			c.tlsKey.Store(fp)
			if first {
				opts.Logger.Info("pinned the BMC's TLS certificate on first use", "node", opts.Node, "bmc", c.addr, "key", fp)
			}
		})
	} else {
		opts.Logger.Warn("not checking the BMC's TLS certificate (insecure): the BMC password is exposed to anyone on the path", "node", opts.Node, "bmc", c.addr)
	}
	c.http = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     tlsConf,
			Proxy:               nil, // a BMC network has no proxy, and a proxy must not see BMC traffic
			DialContext:         (&net.Dialer{Timeout: opts.TryTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: opts.TryTimeout,
			MaxIdleConnsPerHost: opts.MaxSessions,
			MaxConnsPerHost:     opts.MaxSessions,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("the BMC redirects to %s; not following (the session token would go along)", req.URL.Redacted())
		},
	}
	return c, nil
}

// fail builds the one-line error every caller sees: node, BMC, what was
// being done, and why (a RedfishError names the resource and HTTP status).
func (c *redfishController) fail(what string, err error) error {
	return fmt.Errorf("%sBMC redfish://%s: %s: %w", nodePrefix(c.opts.Node), c.addr, what, err)
}

// do runs fn with a connection bound to one attempt's deadline, retrying
// with backoff while the BMC does not answer or answers "busy" (5xx, 429).
// A refused password, a changed certificate and any other 4xx end at once.
func (c *redfishController) do(ctx context.Context, what string, fn func(r rfConn) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return c.fail(what, fmt.Errorf("waiting for a free connection slot: %w", ctx.Err()))
	}
	defer func() { <-c.sem }()
	start := time.Now()
	backoff := c.opts.Backoff
	var lastErr error
	for try := 1; try <= c.opts.Tries; try++ {
		tctx, cancel := context.WithTimeout(ctx, c.opts.TryTimeout)
		err := fn(rfConn{ctx: tctx, c: c, auth: true})
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if !retryable(err) {
			return c.fail(what, err)
		}
		if ctx.Err() != nil {
			return c.fail(what, fmt.Errorf("%w after %d tries in %s: %w", ctx.Err(), try, roundDur(time.Since(start)), err))
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
		return c.fail(what, fmt.Errorf("%w after %d tries in %s: %w", ErrNoAnswer, c.opts.Tries, roundDur(time.Since(start)), lastErr))
	}
	return c.fail(what, fmt.Errorf("failed after %d tries in %s: %w", c.opts.Tries, roundDur(time.Since(start)), lastErr))
}

// retryable says whether another attempt may succeed.
func retryable(err error) bool {
	var re *RedfishError
	var perm permanentError
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrCertificateChanged), errors.As(err, &perm):
		return false
	case errors.As(err, &re):
		return re.transient()
	case errors.Is(err, context.Canceled):
		return false
	}
	var ce *tls.CertificateVerificationError
	return !errors.As(err, &ce)
}

// systemPath is the path of the system this controller drives.
func (c *redfishController) systemPath(r rfConn) (string, error) {
	c.sysMu.Lock()
	defer c.sysMu.Unlock()
	if c.system != "" {
		return c.system, nil
	}
	root, err := c.serviceRoot(r.ctx)
	if err != nil {
		return "", err
	}
	if root.systems == "" {
		return "", permanentError{fmt.Errorf("GET %s: the service root lists no Systems", redfishRoot)}
	}
	col, err := common.GetCollection(r, root.systems)
	if err != nil {
		return "", err
	}
	switch len(col.ItemLinks) {
	case 0:
		return "", permanentError{fmt.Errorf("GET %s: the BMC lists no computer system", root.systems)}
	case 1:
		c.system = col.ItemLinks[0]
		return c.system, nil
	}
	return "", permanentError{fmt.Errorf("GET %s: the BMC manages %d systems (%s); name one in the URL, redfish://%s%s",
		root.systems, len(col.ItemLinks), strings.Join(col.ItemLinks, ", "), c.addr, col.ItemLinks[0])}
}

// getSystem reads the ComputerSystem (with its ETag, for a PATCH).
func (c *redfishController) getSystem(r rfConn) (*redfish.ComputerSystem, error) {
	path, err := c.systemPath(r)
	if err != nil {
		return nil, err
	}
	sys, err := redfish.GetComputerSystem(r, path)
	if err != nil {
		return nil, named("GET", path, err)
	}
	return sys, nil
}

// named adds the request to an error that does not name it yet (a JSON
// decoding error); the transport's errors already do.
func named(method, path string, err error) error {
	var re *RedfishError
	if errors.As(err, &re) || strings.HasPrefix(err.Error(), method+" ") {
		return err
	}
	return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
}

// powerOf maps a Redfish PowerState: a system that is powering off still
// has power, one powering on has it already.
func powerOf(sys *redfish.ComputerSystem) (PowerState, error) {
	switch sys.PowerState {
	case redfish.OnPowerState, redfish.PoweringOnPowerState, redfish.PoweringOffPowerState, redfish.PausedPowerState:
		return PowerOn, nil
	case redfish.OffPowerState:
		return PowerOff, nil
	}
	return "", permanentError{fmt.Errorf("GET %s: unknown PowerState %q", sys.ODataID, sys.PowerState)}
}

func (c *redfishController) PowerState(ctx context.Context) (PowerState, error) {
	var s PowerState
	err := c.do(ctx, "reading power state", func(r rfConn) error {
		sys, err := c.getSystem(r)
		if err != nil {
			return err
		}
		s, err = powerOf(sys)
		return err
	})
	return s, err
}

// Power maps the actions onto ComputerSystem.Reset. Like the IPMI driver,
// "cycle" powers on a node that is off and "reset" of a node that is off is
// an error; "on" and "off" of a node already there do nothing (many BMCs
// answer 409 to them). cycle is PowerCycle where the BMC lists it, else
// ForceRestart, which real firmware also treats as a new boot.
func (c *redfishController) Power(ctx context.Context, a PowerAction) error {
	switch a {
	case ActionOn, ActionOff, ActionSoftOff, ActionCycle, ActionReset:
	default:
		return c.fail("power", fmt.Errorf("unknown action %q (want on, off, soft-off, cycle or reset)", a))
	}
	return c.do(ctx, "power "+string(a), func(r rfConn) error {
		sys, err := c.getSystem(r)
		if err != nil {
			return err
		}
		state, err := powerOf(sys)
		if err != nil {
			return err
		}
		var rt redfish.ResetType
		switch {
		case a == ActionOn && (sys.PowerState == redfish.OnPowerState || sys.PowerState == redfish.PoweringOnPowerState):
			return nil
		case (a == ActionOff || a == ActionSoftOff) && sys.PowerState == redfish.OffPowerState:
			return nil
		case a == ActionReset && state == PowerOff:
			return permanentError{errors.New("node is off; use power on")}
		case a == ActionOn, a == ActionCycle && state == PowerOff:
			rt = redfish.OnResetType
		case a == ActionOff:
			rt = redfish.ForceOffResetType
		case a == ActionSoftOff:
			rt = redfish.GracefulShutdownResetType
		case a == ActionCycle && slices.Contains(sys.SupportedResetTypes, redfish.PowerCycleResetType):
			rt = redfish.PowerCycleResetType
		default: // cycle of a node that is on, reset
			rt = redfish.ForceRestartResetType
		}
		if len(sys.SupportedResetTypes) > 0 && !slices.Contains(sys.SupportedResetTypes, rt) {
			return permanentError{fmt.Errorf("%s: the BMC does not offer ResetType %s (it offers %v)", sys.ODataID, rt, sys.SupportedResetTypes)}
		}
		if err := sys.Reset(rt); err != nil {
			if c.alreadyThere(r, a, err) {
				return nil
			}
			return fmt.Errorf("ComputerSystem.Reset %s: %w", rt, err)
		}
		return nil
	})
}

// alreadyThere says whether a 409 to on, off or soft-off only means the
// node got there meanwhile (another tool, its own power button): BMCs
// answer 409 to On when on and ForceOff when off.
func (c *redfishController) alreadyThere(r rfConn, a PowerAction, err error) bool {
	var re *RedfishError
	if !errors.As(err, &re) || re.Status != http.StatusConflict || (a != ActionOn && a != ActionOff && a != ActionSoftOff) {
		return false
	}
	sys, gerr := c.getSystem(r)
	if gerr != nil {
		return false
	}
	s, gerr := powerOf(sys)
	return gerr == nil && (s == PowerOn) == (a == ActionOn)
}

// Console: Redfish has no serial console a client can attach to (its
// SerialConsole property only advertises IPMI, SSH or Telnet services).
func (c *redfishController) Console(context.Context) (io.ReadWriteCloser, error) {
	return nil, c.fail("opening the console", ErrNoConsole)
}

// Close logs out (the BMC frees the session slot at once instead of after
// its timeout) and closes idle connections.
func (c *redfishController) Close() error {
	c.authMu.Lock()
	a := c.auth
	c.auth = authState{}
	c.authMu.Unlock()
	defer c.http.CloseIdleConnections()
	if a.token == "" || a.session == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// The token goes along by hand: the session is already forgotten.
	target, resource, err := c.resolve(a.session)
	if err == nil {
		var resp *http.Response
		resp, err = c.roundTrip(ctx, http.MethodDelete, target, resource, nil, nil, a)
		if err == nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		c.opts.Logger.Debug("Redfish logout failed; the BMC ends the session after its timeout", "node", c.opts.Node, "bmc", c.addr, "err", err)
	}
	return nil
}
