// Package web is the HTTP side of Racker's boot services: iPXE scripts,
// Ignition configs, OS images and iPXE binaries, the node event API and
// metrics (docs/boot-contract.md). Its store keeps every event in a durable
// journal in the state folder and each node's target (install or disk), and
// it is the api.Recorder of the in-process DHCP and TFTP servers.
//
// The door is New(Config) → *Server, then Serve(ctx, listener) (or Handler
// for an http.Server of the caller's own) and Close.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

// DefaultPort is Racker's HTTP port.
const DefaultPort = 8080

// DefaultConsole is the kernel console argument when a node type sets none.
const DefaultConsole = "ttyS0,115200n8"

// Config is what the HTTP boot services need.
type Config struct {
	// Plan names the nodes, their addresses and roles. Required.
	Plan *plan.Plan
	// StateDir holds the journal, the node targets, the SSH key and the
	// Ignition snippets. Required.
	StateDir string
	// BaseURL is how nodes reach this server; default
	// http://<management node's planned address>:<Port>.
	BaseURL string
	Port    int // used for the default BaseURL; default 8080
	// Release is the OS served at /assets/OS/VERSION/ and installed by the
	// install configs; nil serves no OS (install scripts then fail with 503).
	Release *images.Release
	// IPXEDir holds the iPXE binaries served at /assets/ipxe/ (undionly.kpxe,
	// ipxe.efi); empty serves none.
	IPXEDir string
	// Types are per node type settings; missing types use the defaults.
	// nil reads them from STATE/node-types.json (TypesFile), if present.
	Types map[string]TypeSettings
	// LeaseOf returns the address currently leased to a MAC (the DHCP
	// server's leases). A node's secrets go to its planned address or that
	// lease; a BMC's lease is reported as its bmc_ip. Optional.
	LeaseOf func(mac string) (netip.Addr, bool)
	// Metrics are shared with the DHCP and TFTP servers; nil makes new ones.
	Metrics *api.Metrics
	Logger  *slog.Logger
	// Matchbox, when set, is mounted at api.MatchboxPath, and a node it
	// has a group for is chained to it instead of Racker's own install.
	Matchbox Matchbox
	// MaxWait caps a long poll's wait; default 60 s.
	MaxWait time.Duration
	// Replan re-reads the plan from its files and sets it (the services'
	// reload), for POST /api/v1/plan/reload; nil answers 404.
	Replan func() error
	// Window is how long a node's boot window stays open (default
	// DefaultWindow); Now is the clock (default time.Now; tests).
	Window time.Duration
	Now    func() time.Time
}

// TypeSettings are the settings of one node type.
type TypeSettings struct {
	// Console is the kernel console argument, e.g. "ttyS1,57600n8";
	// "" uses DefaultConsole, "-" passes none.
	Console string
	// InstallDisk is the install disk rule (ignition.ParseDiskRule: a /dev
	// path or ">=SIZE"); "" is Flatcar's rule, the smallest unused disk over 10 GB.
	InstallDisk string
}

// Server is the HTTP boot services.
type Server struct {
	cfg      Config
	base     string
	log      *slog.Logger
	metrics  *api.Metrics
	store    *store
	handler  http.Handler
	hot      *hotFiles // the OS release kept in the page cache (images.go)
	refusals *limiter  // forbidden events, per source
	observed *limiter  // iPXE events of unknown MACs and of nodes outside their window, per MAC
}

// New checks cfg, opens the store in the state folder (replaying the event
// journal) and returns a server ready to serve.
func New(cfg Config) (*Server, error) {
	if cfg.Plan == nil {
		return nil, errors.New("starting the HTTP boot services: no plan")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("starting the HTTP boot services: no state folder")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = api.NewMetrics()
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		ip := cfg.Plan.Management.IP
		if !ip.IsValid() {
			return nil, errors.New("starting the HTTP boot services: no base URL and no planned management address")
		}
		base = "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(cfg.Port))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("starting the HTTP boot services: %w", err)
	}
	if cfg.Types == nil {
		types, err := ReadTypeSettings(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("starting the HTTP boot services: %w", err)
		}
		cfg.Types = types
	}
	for t, ts := range cfg.Types {
		if !validConsole(ts.Console) || (ts.InstallDisk != "" && !validDisk(ts.InstallDisk)) {
			return nil, fmt.Errorf("starting the HTTP boot services: node type %s: console %q / install disk %q not valid", t, ts.Console, ts.InstallDisk)
		}
	}
	st, err := openStore(cfg.StateDir, cfg.Plan, cfg.LeaseOf, cfg.Metrics, cfg.Logger, cfg.Now, cfg.Window)
	if err != nil {
		return nil, fmt.Errorf("starting the HTTP boot services: %w", err)
	}
	s := &Server{cfg: cfg, base: base, log: cfg.Logger, metrics: cfg.Metrics, store: st,
		refusals: newLimiter(refusalEvery, globalRefusals), observed: newLimiter(time.Minute, 50)}
	s.handler = s.routes()
	s.hot = keepHot(releasePaths(cfg.Release), hotInterval, cfg.Logger)
	return s, nil
}

// Handler serves every route; use it with an http.Server of your own, or
// call Serve.
func (s *Server) Handler() http.Handler { return s.handler }

// Recorder is where the DHCP and TFTP servers report events.
func (s *Server) Recorder() api.Recorder { return s.store }

// Metrics are the collectors served on /metrics.
func (s *Server) Metrics() *api.Metrics { return s.metrics }

// BaseURL is the URL nodes use to reach this server.
func (s *Server) BaseURL() string { return s.base }

// SetPlan replaces the plan (e.g. after nodes.csv changed); targets and
// the journal are kept.
func (s *Server) SetPlan(p *plan.Plan) { s.store.setPlan(p) }

// Connection timeouts: a request's header and body must arrive within
// these, an idle keep-alive connection is closed after idleTimeout, and
// each answer must be written within writeTimeout (an asset: each step of
// assetStep bytes, so a download that goes on is never cut; a long poll:
// writeTimeout after its wait). Variables so that tests can shorten them.
var (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 60 * time.Second
	writeTimeout      = 30 * time.Second
)

// Serve answers HTTP on ln until ctx ends, then stops gracefully (waiting
// up to 5 s for requests in flight; long polls end at once). It may run on
// several listeners at once (the nodes' and the management node's).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
}

// Close flushes and closes the event journal. Record after Close logs the
// event as lost.
func (s *Server) Close() error {
	s.hot.Close()
	s.store.close()
	return nil
}
