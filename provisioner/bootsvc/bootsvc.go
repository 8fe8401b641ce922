// Package bootsvc runs Racker's boot services on the rack's internal (PXE)
// network: DHCP (fixed addresses for every planned node and BMC, iPXE boot
// files), TFTP (the iPXE binaries) and HTTP (iPXE scripts, Ignition, OS
// images, the event API), and with Config.Matchbox an embedded matchbox
// (its gRPC API for lokoctl, its HTTP endpoints under /matchbox/), in one
// process, sharing one event journal, one lease store and one set of
// metrics.
//
// The door is Config and Serve (Open, then Services.Serve, for a caller
// that reloads the plan while serving), plus Discover for listening
// without answering. The servers live under internal/ (dhcp, tftp, web,
// leases, matchbox), each taking its socket from here, so tests run them on sockets
// of their own; other processes talk to them through the HTTP API, whose
// types and client are the public package api.
package bootsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/internal/dhcp"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
	"github.com/racker/racker/provisioner/bootsvc/internal/matchbox"
	"github.com/racker/racker/provisioner/bootsvc/internal/tftp"
	"github.com/racker/racker/provisioner/bootsvc/internal/web"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

// Defaults of Config, for the flags of the commands that run the services.
const (
	// DefaultHTTPPort is Racker's HTTP port.
	DefaultHTTPPort = web.DefaultPort
	// DefaultLeaseTime is short, so a machine whose plan changed picks up
	// its new address within minutes.
	DefaultLeaseTime = dhcp.DefaultLeaseTime
)

// Config says what to serve and where.
type Config struct {
	Plan *plan.Plan // required
	// Interface is the PXE interface: DHCP, TFTP and the nodes' HTTP are
	// bound to it (SO_BINDTODEVICE: never answering on another network),
	// HTTP on the management node's planned address. The management views
	// (events, nodes, metrics, reinstall, netboot) are also served on
	// 127.0.0.1:HTTPPort. The address must already be on the interface
	// (racker serve makes sure of it).
	Interface string
	StateDir  string // leases, events, node targets; required
	// TFTPRoot holds undionly.kpxe and ipxe.efi, served over TFTP and at
	// /assets/ipxe/; required (racker serve takes its own payload's
	// share/ipxe: the host's packages are not assumed).
	TFTPRoot    string
	HTTPPort    int           // default DefaultHTTPPort
	LeaseTime   time.Duration // default DefaultLeaseTime
	DynamicPool bool
	Release     *images.Release // the OS to install; nil serves none
	Logger      *slog.Logger
	// Replan makes a new plan from the files (nodes.csv, plan.json) for
	// POST /api/v1/plan/reload, which then Reloads it; nil: the services
	// cannot re-plan themselves and answer 404.
	Replan func() (*plan.Plan, error)
	// Matchbox embeds matchbox's API for lokoctl (internal/matchbox): its
	// gRPC API with mutual TLS on MatchboxPort of the management node's
	// address (certificates in STATE/matchbox, the client bundle in
	// STATE/matchbox-client), its HTTP endpoints at api.MatchboxPath, and
	// nodes it has a group for chained to it.
	Matchbox     bool
	MatchboxPort int // default api.MatchboxRPCPort

	// Sockets to use instead of opening them (tests, socket activation).
	// The services close them when they stop.
	DHCPConn     net.PacketConn
	TFTPConn     net.PacketConn
	HTTPListener net.Listener
	MatchboxConn net.Listener // matchbox's gRPC API (with Matchbox)
	// AdminListener serves the management views on loopback; when
	// HTTPListener is passed in and this is nil, there is none (the given
	// listener serves everything, to callers the server trusts by address).
	AdminListener net.Listener
	// PerSourceConns caps the connections one address holds on the nodes'
	// listener (default web.DefaultPerSourceConns).
	PerSourceConns int
	// Ports of the sockets Open opens itself (default 67, 69).
	DHCPPort, TFTPPort int
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Plan == nil || cfg.StateDir == "" || cfg.TFTPRoot == "" {
		return cfg, errors.New("starting the boot services: a plan, a state folder and a folder of iPXE binaries (TFTPRoot) are required")
	}
	if !cfg.Plan.Management.IP.IsValid() {
		return cfg, errors.New("starting the boot services: the plan has no management node address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultHTTPPort
	}
	if cfg.DHCPPort == 0 {
		cfg.DHCPPort = 67
	}
	if cfg.TFTPPort == 0 {
		cfg.TFTPPort = 69
	}
	if cfg.MatchboxPort == 0 {
		cfg.MatchboxPort = api.MatchboxRPCPort
	}
	if cfg.PerSourceConns <= 0 {
		cfg.PerSourceConns = web.DefaultPerSourceConns
	}
	return cfg, nil
}

// Services are the boot services, built and with their sockets open:
// Serve runs them, Reload changes their plan.
type Services struct {
	cfg Config
	log *slog.Logger

	// the servers (build)
	leases  *leases.Store
	web     *web.Server
	dhcp    *dhcp.Server
	tftp    *tftp.Server
	mb      *matchbox.Server                      // nil without Config.Matchbox
	planned atomic.Pointer[map[netip.Addr]string] // reserved address → MAC, for TFTP's events

	closers   []func() // in opening order; Close runs them backwards
	closeOnce sync.Once
}

// Serve runs the boot services of cfg until ctx ends: Open, then
// Services.Serve.
func Serve(ctx context.Context, cfg Config) error {
	s, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Open builds the servers over the state folder (the lease store and the
// event journal are opened and replayed) and opens the sockets cfg does
// not pass in. A problem with either is an error here, before anything
// serves. Serve runs the result; Close releases it when Serve is never
// called.
func Open(ctx context.Context, cfg Config) (*Services, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		closeGiven(cfg) // Open owns the sockets passed in, whatever happens
		return nil, err
	}
	s := &Services{cfg: cfg, log: cfg.Logger}
	if err := s.build(); err != nil {
		s.Close()
		closeGiven(cfg)
		return nil, fmt.Errorf("starting the boot services: %w", err)
	}
	if err := s.open(ctx); err != nil {
		s.Close()
		closeGiven(cfg) // a second close is harmless
		return nil, fmt.Errorf("starting the boot services: %w", err)
	}
	return s, nil
}

// build makes the lease store and the three servers, wired together: the
// web server's store is the journal the DHCP and TFTP servers record to.
func (s *Services) build() error {
	cfg, log := s.cfg, s.log
	store, err := leases.Open(cfg.StateDir, leases.Options{Logger: log.With("part", "leases")})
	if err != nil {
		return err
	}
	s.leases = store
	s.closers = append(s.closers, func() {
		if err := store.Close(); err != nil {
			log.Error("closing the lease journal", "err", err)
		}
	})
	var replan func() error
	if cfg.Replan != nil {
		replan = func() error {
			p, err := cfg.Replan()
			if err != nil {
				return err
			}
			return s.Reload(p)
		}
	}
	wcfg := web.Config{Plan: cfg.Plan, StateDir: cfg.StateDir, Port: cfg.HTTPPort, Release: cfg.Release,
		IPXEDir: cfg.TFTPRoot, LeaseOf: store.Addr, Replan: replan, Logger: log.With("part", "http")}
	if cfg.Matchbox {
		if s.mb, err = matchbox.New(matchbox.Config{StateDir: cfg.StateDir, Hosts: []netip.Addr{cfg.Plan.Management.IP},
			Logger: log.With("part", "matchbox")}); err != nil {
			return err
		}
		wcfg.Matchbox = s.mb
	}
	if s.web, err = web.New(wcfg); err != nil {
		return err
	}
	s.closers = append(s.closers, func() { s.web.Close() })
	res := reservations(cfg.Plan)
	if s.dhcp, err = dhcp.New(dhcp.Config{ServerIP: cfg.Plan.Management.IP, Subnet: cfg.Plan.Subnet, LeaseTime: cfg.LeaseTime,
		HTTPPort: cfg.HTTPPort, Reservations: res, Refused: cfg.Plan.Retired, DynamicPool: cfg.DynamicPool, Leases: store,
		Recorder: s.web.Recorder(), Metrics: s.web.Metrics(), Logger: log.With("part", "dhcp")}); err != nil {
		return err
	}
	s.planned.Store(plannedByIP(res))
	if s.tftp, err = tftp.New(tftp.Config{Root: cfg.TFTPRoot, MACForIP: s.macForIP, Recorder: s.web.Recorder(),
		Metrics: s.web.Metrics(), Logger: log.With("part", "tftp")}); err != nil {
		return err
	}
	s.closers = append(s.closers, s.tftp.Shutdown) // idempotent: also run when serving stops
	return nil
}

// macForIP names the machine behind a TFTP client's address: its planned
// reservation, else its pool lease.
func (s *Services) macForIP(ip netip.Addr) string {
	if mac, ok := (*s.planned.Load())[ip]; ok {
		return mac
	}
	for _, l := range s.leases.All() { // pool clients only: rare, and few
		if cur, ok := s.leases.Addr(l.MAC); ok && cur == ip { // a current lease only
			return l.MAC
		}
	}
	return ""
}

// open takes the sockets cfg passes in, or opens them: DHCP and TFTP bound
// to the PXE interface, HTTP on the management node's address. They are
// closed when the services stop (a second close, after a server closed its
// own, is harmless).
func (s *Services) open(ctx context.Context) error {
	cfg := &s.cfg
	var err error
	if cfg.DHCPConn == nil {
		if cfg.DHCPConn, err = dhcp.Listen(ctx, cfg.Interface, cfg.DHCPPort); err != nil {
			return err
		}
	}
	s.closers = append(s.closers, func() { cfg.DHCPConn.Close() })
	if cfg.TFTPConn == nil {
		if cfg.TFTPConn, err = tftp.Listen(ctx, cfg.Interface, cfg.TFTPPort); err != nil {
			return err
		}
	}
	s.closers = append(s.closers, func() { cfg.TFTPConn.Close() })
	if cfg.HTTPListener == nil {
		addr := net.JoinHostPort(cfg.Plan.Management.IP.String(), strconv.Itoa(cfg.HTTPPort))
		if cfg.HTTPListener, err = web.ListenOnDevice(ctx, cfg.Interface, addr); err != nil {
			return err
		}
		if cfg.AdminListener == nil {
			local := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPPort))
			if cfg.AdminListener, err = net.Listen("tcp4", local); err != nil {
				cfg.HTTPListener.Close()
				return fmt.Errorf("listening for the management views on %s: %w", local, err)
			}
		}
	}
	cfg.HTTPListener = web.LimitPerSource(cfg.HTTPListener, cfg.PerSourceConns, s.web.Metrics())
	s.closers = append(s.closers, func() { cfg.HTTPListener.Close() })
	if s.mb != nil {
		if cfg.MatchboxConn == nil {
			addr := net.JoinHostPort(cfg.Plan.Management.IP.String(), strconv.Itoa(cfg.MatchboxPort))
			if cfg.MatchboxConn, err = net.Listen("tcp4", addr); err != nil {
				return fmt.Errorf("listening for matchbox's gRPC API on %s: %w", addr, err)
			}
		}
		s.closers = append(s.closers, func() { cfg.MatchboxConn.Close() })
	}
	if cfg.AdminListener != nil {
		s.closers = append(s.closers, func() { cfg.AdminListener.Close() })
	}
	return nil
}

// Serve runs DHCP, TFTP and HTTP until ctx ends (a graceful stop:
// transfers and requests in flight finish, queued leases are written) or
// one of them fails, which stops the others and returns its error. The
// services are closed when it returns.
func (s *Services) Serve(ctx context.Context) error {
	defer s.Close()
	cfg, log := s.cfg, s.log
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				cancel(fmt.Errorf("%s stopped: %w", name, err))
			}
		}()
	}
	run("DHCP", func() error { return s.dhcp.Serve(ctx, cfg.DHCPConn) })
	run("TFTP", func() error { return s.tftp.Serve(cfg.TFTPConn) })
	run("HTTP", func() error { return s.web.Serve(ctx, cfg.HTTPListener) })
	if s.mb != nil {
		run("matchbox gRPC", func() error { return s.mb.ServeRPC(ctx, cfg.MatchboxConn) })
	}
	if cfg.AdminListener != nil {
		run("HTTP (management views)", func() error { return s.web.Serve(ctx, cfg.AdminListener) })
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		s.tftp.Shutdown() // ends Serve; waits for transfers in flight
	}()
	log.Info("boot services running", "interface", cfg.Interface, "address", cfg.Plan.Management.IP, "http_port", cfg.HTTPPort,
		"management_views", listenerAddr(cfg.AdminListener),
		"tftp_root", cfg.TFTPRoot, "reservations", len(*s.planned.Load()), "dynamic_pool", cfg.DynamicPool, "matchbox", s.mb != nil)
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("boot services stopped")
	return nil
}

// Reload takes a new plan while serving (nodes.csv changed; racker serve
// reloads on SIGHUP and on POST /api/v1/plan/reload): DHCP reservations
// and the web server's nodes are replaced; leases, events and targets are
// kept, except those of machines that left the rack (Plan.Retired), which
// are dropped. The subnet and the
// management address must stay the same (they are what the sockets and
// the nodes' URLs are made of): changing them needs a restart.
func (s *Services) Reload(p *plan.Plan) error {
	if p.Subnet != s.cfg.Plan.Subnet || p.Management.IP != s.cfg.Plan.Management.IP {
		return fmt.Errorf("plan not reloaded: the subnet (%s) or the management address (%s) changed; restart the boot services",
			p.Subnet, p.Management.IP)
	}
	res := reservations(p)
	if err := s.dhcp.SetReservations(res, p.Retired); err != nil {
		return fmt.Errorf("plan not reloaded: %w", err)
	}
	s.planned.Store(plannedByIP(res))
	s.web.SetPlan(p)
	s.log.Info("plan reloaded", "reservations", len(res))
	return nil
}

// Close releases what Open opened: the sockets, the journal and the lease
// store. Serve calls it when it returns; calling it again does nothing.
func (s *Services) Close() {
	s.closeOnce.Do(func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
	})
}

// closeGiven closes the sockets cfg passed in, which the services own.
func closeGiven(cfg Config) {
	if cfg.DHCPConn != nil {
		cfg.DHCPConn.Close()
	}
	if cfg.TFTPConn != nil {
		cfg.TFTPConn.Close()
	}
	if cfg.HTTPListener != nil {
		cfg.HTTPListener.Close()
	}
	if cfg.MatchboxConn != nil {
		cfg.MatchboxConn.Close()
	}
	if cfg.AdminListener != nil {
		cfg.AdminListener.Close()
	}
}

func plannedByIP(res []dhcp.Reservation) *map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(res))
	for _, r := range res {
		m[r.IP] = r.MAC
	}
	return &m
}

// reservations are the plan's fixed addresses: every node's primary NIC
// (with its hostname) and every BMC on the internal network, including
// nodes excluded from the cluster, which are still cabled there. The
// management node is the server itself and its BMC is on the public side.
func reservations(p *plan.Plan) []dhcp.Reservation {
	var out []dhcp.Reservation
	for _, n := range p.Servers() {
		if n.IP.IsValid() {
			out = append(out, dhcp.Reservation{MAC: n.PrimaryMAC, IP: n.IP, Hostname: n.Hostname, Kind: dhcp.KindNode})
		}
		if n.BMCIP.IsValid() && n.BMCMAC != "" {
			out = append(out, dhcp.Reservation{MAC: n.BMCMAC, IP: n.BMCIP, Kind: dhcp.KindBMC})
		}
	}
	return out
}

func listenerAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
