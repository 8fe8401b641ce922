// Package dhcp is Racker's DHCP server for the rack's internal network: a
// fixed address for every planned node and BMC, the iPXE boot file for
// netbooting machines, and (only with --dynamic-pool) addresses for machines
// the plan does not know.
//
// The answer to a request is computed by a pure function (answer) from the
// request and the reservations; the server around it only moves packets. It
// is built for a whole rack powering on at once: reservations are indexed in
// memory, a bounded queue feeds a few workers, per-packet work is a parse,
// a map lookup and a write, and an ACK waits only for its lease's share of a
// group-committed fsync.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
	"github.com/racker/racker/provisioner/inventory"
)

// Kinds of reservation.
const (
	KindNode = "node"
	KindBMC  = "bmc"
)

// DefaultLeaseTime is short, so a machine whose plan changed picks up its
// new address within minutes.
const DefaultLeaseTime = 10 * time.Minute

// Reservation is a planned machine's fixed address.
type Reservation struct {
	MAC      string
	IP       netip.Addr
	Hostname string // sent as option 12; empty for BMCs
	Kind     string // KindNode or KindBMC
}

// Config is what the server needs; Leases is required.
type Config struct {
	// ServerIP is the management node's internal address: server
	// identifier, TFTP server and host of the HTTP boot URLs.
	ServerIP     netip.Addr
	Subnet       netip.Prefix
	LeaseTime    time.Duration // default DefaultLeaseTime
	HTTPPort     int           // default 8080
	Reservations []Reservation
	// Refused are the MACs of machines that left the rack (racker retire,
	// racker replace): they get no answer at all, not even from the
	// dynamic pool, so a retired server powered on again, or a broken one
	// still cabled, never takes an address or a netboot.
	Refused []string
	// DynamicPool gives unknown MACs an address from the upper half of the
	// subnet; off, they get nothing (and are recorded either way).
	DynamicPool bool
	Router      netip.Addr   // option 3, when set
	DNS         []netip.Addr // option 6, when set

	Leases   *leases.Store
	Recorder api.Recorder // dhcp and machine_seen events; may be nil
	Metrics  *api.Metrics // may be nil
	Logger   *slog.Logger

	Workers  int // default: the number of CPUs, at least 2
	QueueLen int // packets waiting for a worker before new ones are dropped (default 4096)
}

// Server answers DHCP on one socket.
type Server struct {
	cfg     Config
	r       atomic.Pointer[responder] // swapped whole by SetReservations
	mu      sync.Mutex                // serialises SetReservations
	log     *slog.Logger
	seen    *seenFilter // unknown MACs reported recently
	told    *seenFilter // MACs whose lease was logged at info recently
	warn    *rateLimit
	perMAC  *eventLimit // dhcp events per MAC (limit.go)
	unknown *perSecond  // machine_seen events overall

	events  chan api.Event
	pending sync.WaitGroup // ACKs waiting for their lease to be durable
}

// New checks cfg and builds a server; Serve runs it.
func New(cfg Config) (*Server, error) {
	if cfg.Leases == nil {
		return nil, errors.New("dhcp: Config.Leases is required")
	}
	if !cfg.ServerIP.Is4() || !cfg.Subnet.Contains(cfg.ServerIP) {
		return nil, fmt.Errorf("dhcp: server address %s is not an IPv4 address in subnet %s", cfg.ServerIP, cfg.Subnet)
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8080
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(2, runtime.NumCPU())
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.Reservations, err = checkReservations(cfg.Reservations, cfg.Subnet); err != nil {
		return nil, err
	}
	if cfg.Refused, err = checkRefused(cfg.Refused, cfg.Reservations); err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, log: cfg.Logger,
		seen: newSeenFilter(5 * time.Minute), told: newSeenFilter(time.Hour), warn: &rateLimit{every: time.Second},
		perMAC: newEventLimit(), unknown: &perSecond{n: unknownPerSecond}}
	srv.r.Store(newResponder(cfg, cfg.Leases.All()))
	srv.releaseRefused(cfg.Refused)
	return srv, nil
}

// SetReservations replaces the planned addresses and the refused MACs
// while serving (nodes.csv changed): requests from then on are answered
// from res; the pool is kept. A node whose planned address changed gets a
// NAK at its next renewal and asks again. Leases of refused MACs are taken
// back (released in the lease journal).
func (s *Server) SetReservations(res []Reservation, refused []string) error {
	res, err := checkReservations(res, s.cfg.Subnet)
	if err != nil {
		return err
	}
	if refused, err = checkRefused(refused, res); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.Reservations, cfg.Refused = res, refused
	s.r.Store(s.r.Load().withReservations(cfg))
	s.releaseRefused(refused)
	return nil
}

// releaseRefused takes back the leases of refused MACs.
func (s *Server) releaseRefused(refused []string) {
	for _, mac := range refused {
		if _, ok := s.cfg.Leases.Get(mac); ok {
			s.cfg.Leases.Release(mac, nil)
			s.log.Info("lease of a machine that left the rack taken back", "mac", mac)
		}
	}
}

// checkRefused normalises the refused MACs and refuses one that is also
// planned (the plan never makes both; a caller that did is wrong).
func checkRefused(in []string, res []Reservation) ([]string, error) {
	planned := map[string]bool{}
	for _, r := range res {
		planned[r.MAC] = true
	}
	out := make([]string, 0, len(in))
	for _, m := range in {
		mac, err := inventory.NormalizeMAC(m)
		if err != nil {
			return nil, fmt.Errorf("dhcp: refused MAC %s: %w", m, err)
		}
		if planned[mac] {
			return nil, fmt.Errorf("dhcp: %s is both planned and refused", mac)
		}
		out = append(out, mac)
	}
	return out, nil
}

// checkReservations normalises the MACs (into a copy: not the caller's
// slice) and refuses addresses outside the subnet or planned twice.
func checkReservations(in []Reservation, subnet netip.Prefix) ([]Reservation, error) {
	out := append([]Reservation(nil), in...)
	seenIP := map[netip.Addr]string{}
	for i, res := range out {
		mac, err := inventory.NormalizeMAC(res.MAC)
		if err != nil {
			return nil, fmt.Errorf("dhcp: reservation %s: %w", res.MAC, err)
		}
		out[i].MAC = mac
		if !subnet.Contains(res.IP) {
			return nil, fmt.Errorf("dhcp: reservation of %s: %s is outside subnet %s", mac, res.IP, subnet)
		}
		if other, dup := seenIP[res.IP]; dup {
			return nil, fmt.Errorf("dhcp: %s and %s are both planned at %s", other, mac, res.IP)
		}
		seenIP[res.IP] = mac
	}
	return out, nil
}

type packet struct {
	buf  []byte
	n    int
	peer net.Addr
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 1500); return &b }}

// Serve answers requests arriving on conn until ctx ends or conn fails. It
// does not close conn. A malformed packet is logged and dropped; a failing
// socket ends Serve with the error.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	queue := make(chan packet, s.cfg.QueueLen)
	s.events = make(chan api.Event, 4096)
	var workers, recorders sync.WaitGroup
	for range s.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for p := range queue {
				s.handle(conn, p)
			}
		}()
	}
	// Recording waits for the event journal's fsync; several recorders let
	// the journal batch them, and the workers never wait for the disk.
	for range 16 {
		recorders.Add(1)
		go func() {
			defer recorders.Done()
			for e := range s.events {
				if s.cfg.Recorder != nil {
					s.cfg.Recorder.Record(e)
				}
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	var err error
	for {
		bp := bufPool.Get().(*[]byte)
		n, peer, rerr := conn.ReadFrom(*bp)
		if rerr != nil {
			bufPool.Put(bp)
			if ctx.Err() == nil {
				err = fmt.Errorf("reading DHCP requests on %s: %w", conn.LocalAddr(), rerr)
			}
			break
		}
		select {
		case queue <- packet{buf: *bp, n: n, peer: peer}:
		default:
			bufPool.Put(bp)
			s.cfg.Metrics.Dropped("queue_full")
			s.warn.do(func(n int) { s.log.Warn("DHCP work queue full: dropping requests", "dropped", n) })
		}
	}
	close(queue)
	workers.Wait()
	s.pending.Wait()
	close(s.events)
	recorders.Wait()
	return err
}

func (s *Server) handle(conn net.PacketConn, p packet) {
	defer bufPool.Put(&p.buf)
	req, err := dhcpv4.FromBytes(p.buf[:p.n])
	if err != nil {
		s.cfg.Metrics.Dropped("malformed")
		s.warn.do(func(n int) { s.log.Warn("dropping malformed DHCP packets", "from", p.peer, "count", n, "err", err) })
		return
	}
	now := time.Now()
	d := s.r.Load().answer(req, now)
	mac := req.ClientHWAddr.String()
	if d.unknown && s.seen.first(mac, now) && s.unknown.allow(now) {
		s.log.Info("a machine that is not in the plan asks for DHCP", "mac", mac, "vendor_class", req.ClassIdentifier(),
			"user_class", strings.Join(req.UserClass(), ","), "pool", s.cfg.DynamicPool)
		s.record(api.Event{Time: now, MAC: mac, Kind: api.KindMachineSeen, Source: p.peer.String(), Message: describe(req, netip.Addr{}),
			ClientArch: clientArch(req)})
	}
	if d.drop == dropRetired && s.seen.first(mac, now) {
		s.log.Warn("a machine that left the rack (retired or replaced) asks for DHCP: no answer", "mac", mac)
	}
	if d.release != "" {
		s.cfg.Leases.Release(d.release, nil)
	}
	if d.drop != "" {
		s.cfg.Metrics.Dropped(d.drop)
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("no DHCP answer", "mac", mac, "type", req.MessageType().String(), "reason", d.drop)
		}
		return
	}
	if d.reply == nil {
		return
	}
	to := destination(req, d.reply)
	out := d.reply.ToBytes()
	if d.lease == nil {
		s.send(conn, out, to, mac)
		return
	}
	l := *d.lease
	s.pending.Add(1)
	s.cfg.Leases.Commit(l, func(err error) {
		defer s.pending.Done()
		if err != nil {
			s.log.Error("not acknowledging a lease that could not be stored", "mac", l.MAC, "ip", l.IP, "err", err)
			return
		}
		s.send(conn, out, to, l.MAC)
		s.cfg.Metrics.Lease(d.kind)
		if s.told.first(l.MAC, now) { // renewals stay quiet
			s.log.Info("lease given", "mac", l.MAC, "ip", l.IP, "kind", d.kind)
		}
		if !s.perMAC.allow(l.MAC, now) {
			s.cfg.Metrics.Dropped("event_rate_limited")
			return
		}
		s.record(api.Event{Time: now, MAC: l.MAC, Kind: api.KindDHCP, Source: p.peer.String(), Message: describe(req, l.IP),
			ClientArch: clientArch(req)})
	})
}

func (s *Server) send(conn net.PacketConn, b []byte, to *net.UDPAddr, mac string) {
	if _, err := conn.WriteTo(b, to); err != nil {
		s.cfg.Metrics.Dropped("send_failed")
		s.warn.do(func(n int) { s.log.Warn("sending a DHCP reply failed", "mac", mac, "to", to, "count", n, "err", err) })
	}
}

// record hands an event to the recorders without waiting; if the journal
// falls behind by thousands of events, the newest are dropped and counted
// rather than stalling DHCP.
func (s *Server) record(e api.Event) {
	select {
	case s.events <- e:
	default:
		s.cfg.Metrics.Dropped("event_queue_full")
		s.warn.do(func(n int) {
			s.log.Warn("the event journal is behind: DHCP events dropped", "count", n, "mac", e.MAC, "kind", e.Kind)
		})
	}
}

// describe is the message of dhcp and machine_seen events: the address, the
// client architecture and the user and vendor classes.
func describe(req *dhcpv4.DHCPv4, ip netip.Addr) string {
	var b strings.Builder
	if ip.IsValid() {
		b.WriteString("ip=" + ip.String() + " ")
	}
	b.WriteString("type=" + strings.ToLower(req.MessageType().String()))
	if archs := req.ClientArch(); len(archs) > 0 {
		b.WriteString(" arch=" + strconv.Itoa(int(archs[0])))
	}
	if uc := req.UserClass(); len(uc) > 0 {
		b.WriteString(" user_class=" + strconv.Quote(capClass(strings.Join(uc, ","))))
	}
	if vc := req.ClassIdentifier(); vc != "" {
		b.WriteString(" vendor_class=" + strconv.Quote(capClass(vc)))
	}
	return b.String()
}

// clientArch is option 93 as the event's typed field (nil when absent).
func clientArch(req *dhcpv4.DHCPv4) []uint16 {
	var out []uint16
	for _, a := range req.ClientArch() {
		out = append(out, uint16(a))
	}
	return out
}

// seenFilter remembers when each unknown MAC was last reported, so a device
// that DISCOVERs every few seconds makes one event per window, not thousands.
type seenFilter struct {
	mu     sync.Mutex
	window time.Duration
	last   map[string]time.Time
}

func newSeenFilter(window time.Duration) *seenFilter {
	return &seenFilter{window: window, last: map[string]time.Time{}}
}

func (f *seenFilter) first(mac string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.last[mac]; ok && now.Sub(t) < f.window {
		return false
	}
	if len(f.last) > 100000 { // bound the memory a MAC flood can take
		clear(f.last)
	}
	f.last[mac] = now
	return true
}

// rateLimit runs a log call at most once per interval, with the number of
// occurrences since the last one.
type rateLimit struct {
	mu    sync.Mutex
	every time.Duration
	last  time.Time
	n     int
}

func (r *rateLimit) do(f func(n int)) {
	r.mu.Lock()
	r.n++
	if time.Since(r.last) < r.every {
		r.mu.Unlock()
		return
	}
	n := r.n
	r.n, r.last = 0, time.Now()
	r.mu.Unlock()
	f(n)
}
