// Package bootsvc runs Racker's boot services on the rack's internal (PXE)
// network: DHCP (fixed addresses for every planned node and BMC, iPXE boot
// files), TFTP (the iPXE binaries) and HTTP (iPXE scripts, Ignition, OS
// images, the event API), in one process, sharing one event journal, one
// lease store and one set of metrics.
//
// The door is Config + Serve; the servers live in the dhcp, tftp and web
// packages, each with its socket passed in, so tests run them on sockets
// of their own.
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

	"github.com/racker/racker/provisioner/bootsvc/dhcp"
	"github.com/racker/racker/provisioner/bootsvc/leases"
	"github.com/racker/racker/provisioner/bootsvc/tftp"
	"github.com/racker/racker/provisioner/bootsvc/web"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

// Config says what to serve and where.
type Config struct {
	Plan *plan.Plan // required
	// Interface is the PXE interface: DHCP and TFTP are bound to it (never
	// answering on another network), HTTP listens on the management node's
	// planned address. The address must already be on the interface
	// (racker serve makes sure of it).
	Interface string
	StateDir  string // leases, events, node targets; required
	// TFTPRoot holds undionly.kpxe and ipxe.efi, served over TFTP and at
	// /assets/ipxe/; required (racker serve takes its own payload's
	// share/ipxe: the host's packages are not assumed).
	TFTPRoot    string
	HTTPPort    int           // default 8080
	LeaseTime   time.Duration // default dhcp.DefaultLeaseTime
	DynamicPool bool
	Release     *images.Release // the OS to install; nil serves none
	Types       map[string]web.TypeSettings
	Logger      *slog.Logger

	// Sockets to use instead of opening them (tests, socket activation).
	// Serve closes them when it returns.
	DHCPConn     net.PacketConn
	TFTPConn     net.PacketConn
	HTTPListener net.Listener
	// Ports of the sockets Serve opens itself (default 67, 69).
	DHCPPort, TFTPPort int
	// Ready, if set, is called once every socket is open and serving.
	Ready func()
	// Reload, if set, takes new plans while serving (nodes.csv changed;
	// racker serve sends one on SIGHUP): DHCP reservations and the web
	// server's nodes are replaced; leases, events and targets are kept.
	// The subnet and the management address must stay the same.
	Reload <-chan *plan.Plan
}

// Serve runs DHCP, TFTP and HTTP until ctx ends (a graceful stop: transfers
// and requests in flight finish, queued leases are written) or one of them
// fails, which stops the others and returns its error.
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Plan == nil || cfg.StateDir == "" || cfg.TFTPRoot == "" {
		return errors.New("starting the boot services: a plan, a state folder and a folder of iPXE binaries (TFTPRoot) are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = web.DefaultPort
	}
	if cfg.DHCPPort == 0 {
		cfg.DHCPPort = 67
	}
	if cfg.TFTPPort == 0 {
		cfg.TFTPPort = 69
	}
	log := cfg.Logger
	mgmt := cfg.Plan.Management.IP
	if !mgmt.IsValid() {
		return errors.New("starting the boot services: the plan has no management node address")
	}
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	store, err := leases.Open(cfg.StateDir, leases.Options{Logger: log.With("part", "leases")})
	if err != nil {
		return fmt.Errorf("starting the boot services: %w", err)
	}
	closers = append(closers, func() {
		if err := store.Close(); err != nil {
			log.Error("closing the lease journal", "err", err)
		}
	})
	webSrv, err := web.New(web.Config{Plan: cfg.Plan, StateDir: cfg.StateDir, Port: cfg.HTTPPort, Release: cfg.Release,
		IPXEDir: cfg.TFTPRoot, Types: cfg.Types, LeaseOf: store.Addr, Logger: log.With("part", "http")})
	if err != nil {
		return err
	}
	closers = append(closers, func() { webSrv.Close() })

	res := Reservations(cfg.Plan)
	dhcpSrv, err := dhcp.New(dhcp.Config{ServerIP: mgmt, Subnet: cfg.Plan.Subnet, LeaseTime: cfg.LeaseTime,
		HTTPPort: cfg.HTTPPort, Reservations: res, DynamicPool: cfg.DynamicPool, Leases: store,
		Recorder: webSrv.Recorder(), Metrics: webSrv.Metrics(), Logger: log.With("part", "dhcp")})
	if err != nil {
		return fmt.Errorf("starting the boot services: %w", err)
	}
	var planned atomic.Pointer[map[netip.Addr]string]
	planned.Store(plannedByIP(res))
	macForIP := func(ip netip.Addr) string {
		if mac, ok := (*planned.Load())[ip]; ok {
			return mac
		}
		for _, l := range store.All() { // pool clients only: rare, and few
			if l.IP == ip {
				return l.MAC
			}
		}
		return ""
	}
	tftpSrv, err := tftp.New(tftp.Config{Root: cfg.TFTPRoot, MACForIP: macForIP, Recorder: webSrv.Recorder(),
		Metrics: webSrv.Metrics(), Logger: log.With("part", "tftp")})
	if err != nil {
		return fmt.Errorf("starting the boot services: %w", err)
	}
	closers = append(closers, tftpSrv.Shutdown) // idempotent: also run when serving stops

	// Sockets: the caller's, or opened here; closed on return either way
	// (a second close, after the server closed its own, is harmless).
	if cfg.DHCPConn == nil {
		if cfg.DHCPConn, err = dhcp.Listen(ctx, cfg.Interface, cfg.DHCPPort); err != nil {
			return fmt.Errorf("starting the boot services: %w", err)
		}
	}
	closers = append(closers, func() { cfg.DHCPConn.Close() })
	if cfg.TFTPConn == nil {
		if cfg.TFTPConn, err = tftp.Listen(ctx, cfg.Interface, cfg.TFTPPort); err != nil {
			return fmt.Errorf("starting the boot services: %w", err)
		}
	}
	closers = append(closers, func() { cfg.TFTPConn.Close() })
	if cfg.HTTPListener == nil {
		addr := net.JoinHostPort(mgmt.String(), strconv.Itoa(cfg.HTTPPort))
		if cfg.HTTPListener, err = net.Listen("tcp4", addr); err != nil {
			return fmt.Errorf("starting the boot services: listening for HTTP on %s: %w", addr, err)
		}
	}
	closers = append(closers, func() { cfg.HTTPListener.Close() })

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
	run("DHCP", func() error { return dhcpSrv.Serve(ctx, cfg.DHCPConn) })
	run("TFTP", func() error { return tftpSrv.Serve(cfg.TFTPConn) })
	run("HTTP", func() error { return webSrv.Serve(ctx, cfg.HTTPListener) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		tftpSrv.Shutdown() // ends Serve; waits for transfers in flight
	}()
	if cfg.Reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case p, ok := <-cfg.Reload:
					if !ok {
						return
					}
					if p.Subnet != cfg.Plan.Subnet || p.Management.IP != mgmt {
						log.Error("plan not reloaded: the subnet or the management address changed; restart racker serve",
							"subnet", p.Subnet, "address", p.Management.IP)
						continue
					}
					res := Reservations(p)
					if err := dhcpSrv.SetReservations(res); err != nil {
						log.Error("plan not reloaded", "err", err)
						continue
					}
					planned.Store(plannedByIP(res))
					webSrv.SetPlan(p)
					log.Info("plan reloaded", "reservations", len(res))
				}
			}
		}()
	}
	log.Info("boot services running", "interface", cfg.Interface, "address", mgmt, "http_port", cfg.HTTPPort,
		"tftp_root", cfg.TFTPRoot, "reservations", len(res), "dynamic_pool", cfg.DynamicPool)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("boot services stopped")
	return nil
}

func plannedByIP(res []dhcp.Reservation) *map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(res))
	for _, r := range res {
		m[r.IP] = r.MAC
	}
	return &m
}

// Reservations are the plan's fixed addresses: every node's primary NIC
// (with its hostname) and every BMC on the internal network, including
// nodes excluded from the cluster, which are still cabled there. The
// management node is the server itself and its BMC is on the public side.
func Reservations(p *plan.Plan) []dhcp.Reservation {
	var out []dhcp.Reservation
	for _, n := range append(append([]plan.Node(nil), p.Nodes...), p.Excluded...) {
		if n.IP.IsValid() {
			out = append(out, dhcp.Reservation{MAC: n.PrimaryMAC, IP: n.IP, Hostname: n.Hostname, Kind: dhcp.KindNode})
		}
		if n.BMCIP.IsValid() && n.BMCMAC != "" {
			out = append(out, dhcp.Reservation{MAC: n.BMCMAC, IP: n.BMCIP, Kind: dhcp.KindBMC})
		}
	}
	return out
}
