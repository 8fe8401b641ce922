// Package vbmc is the simulator's virtual BMC: an IPMI server (go-ipmi's
// BMC server) and, when asked, a Redfish service, whose hardware is a
// libvirt domain. It behaves like the BMC of a real server so Racker cannot
// tell the two apart: it gets its address by DHCP on its own interface
// (retrying until a server answers, renewing), answers RMCP+ on UDP 623
// with cipher suites 3 and 17 only, maps chassis power onto the domain,
// keeps boot flags with IPMI semantics (next boot only or persistent, EFI
// or legacy, parameter 5 read back byte-exact, parameter 3's 60 s rule) and
// applies them on every power-on and on every guest-initiated reboot, and
// bridges Serial over LAN to the VM's serial console socket. Its Redfish
// service (HTTPS on TCP 443, a self-signed certificate, sessions that
// expire) drives the same chassis and the same boot flags, so both
// protocols see one machine (redfish.go).
//
// The door is Run(ctx, Config). The simulator runs one per BMC, inside the
// BMC's network namespace (`racker-sim vbmc`, hidden).
package vbmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/hal"

	"github.com/racker/racker/simulator/dhcpclient"
)

// Config describes one virtual BMC.
type Config struct {
	// Name identifies the node in logs and errors (default: Domain).
	Name string
	// Domain is the libvirt domain the BMC manages (e.g. rsim-n1).
	Domain string
	// PrimaryMAC selects the interface that gets the PXE boot order;
	// empty means the domain's first interface (contract D: NIC 1).
	PrimaryMAC string
	// LibvirtSocket is libvirtd's socket (default DefaultLibvirtSocket).
	LibvirtSocket string

	// Interface is the BMC's NIC, where it runs its DHCP client.
	Interface string
	// Static, when valid, replaces DHCP: this address is put on Interface
	// (when set) and served. Meant for tests.
	Static netip.Prefix
	// Port is the IPMI UDP port (default 623; 0 is not "any": use -1 in
	// tests to let the kernel choose, and OnListen to learn it).
	Port int

	// Protocols the BMC serves (ParseProtocols reads a flag's list). Empty
	// means IPMI only, what the simulator ran before Redfish existed; a
	// Redfish-only BMC, like many sold today, has no IPMI and no SOL.
	Protocols []Protocol
	// RedfishPort is the HTTPS port (default 443; -1 lets the kernel
	// choose, and OnRedfishListen tells which).
	RedfishPort int
	// TLSCertFile and TLSKeyFile keep the Redfish certificate across
	// restarts, as a BMC keeps its own: loaded when they exist, made and
	// written when not. Empty: a new certificate for each Run.
	TLSCertFile, TLSKeyFile string
	// SessionTimeout ends an idle Redfish session (default
	// DefaultSessionTimeout); MaxSessions bounds live sessions (default
	// DefaultMaxSessions).
	SessionTimeout time.Duration
	MaxSessions    int

	// ConsoleSocket is the VM's serial console unix socket (QEMU binds it);
	// empty means the BMC has no SOL.
	ConsoleSocket string

	// Credentials: from files (what the simulator uses, nothing in argv) or
	// values. Never logged, never in errors.
	UserFile, PasswordFile string
	User, Password         string

	Logger *slog.Logger

	// Machine replaces the libvirt domain (unit tests use an in-memory
	// machine). When set, Domain and LibvirtSocket are unused.
	Machine Machine
	// OnListen is called each time the IPMI server listens on an address
	// (after a lease, after a new lease).
	OnListen func(netip.AddrPort)
	// OnRedfishListen is the same for the Redfish service.
	OnRedfishListen func(netip.AddrPort)

	now func() time.Time // tests move time; default time.Now
}

// DefaultPort is IPMI's RMCP port.
const DefaultPort = 623

// DefaultRedfishPort is HTTPS.
const DefaultRedfishPort = 443

// Protocol is a management protocol a virtual BMC serves.
type Protocol string

const (
	ProtocolIPMI    Protocol = "ipmi"
	ProtocolRedfish Protocol = "redfish"
)

// ParseProtocols reads a comma-separated list such as "ipmi,redfish".
func ParseProtocols(s string) ([]Protocol, error) {
	var ps []Protocol
	for _, f := range strings.Split(s, ",") {
		p := Protocol(strings.ToLower(strings.TrimSpace(f)))
		switch p {
		case ProtocolIPMI, ProtocolRedfish:
			if !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		default:
			return nil, fmt.Errorf("BMC protocol %q: want ipmi or redfish (a comma-separated list)", f)
		}
	}
	return ps, nil
}

// serves says whether the BMC serves p.
func (c *Config) serves(p Protocol) bool { return slices.Contains(c.Protocols, p) }

// Run runs the virtual BMC until ctx ends (then it returns nil) or it cannot
// go on (libvirt gone, socket error).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.complete(); err != nil {
		return err
	}
	user, password, err := cfg.credentials()
	if err != nil {
		return err
	}
	log := cfg.Logger.With("node", cfg.Name)

	m := cfg.Machine
	if m == nil {
		lm, err := openLibvirt(cfg.LibvirtSocket, cfg.Domain, cfg.PrimaryMAC, log)
		if err != nil {
			return fmt.Errorf("virtual BMC of %s: %w", cfg.Name, err)
		}
		defer lm.Close()
		m = lm
	}
	ch, err := newChassis(ctx, m, cfg.Name, cfg.now, log)
	if err != nil {
		return fmt.Errorf("virtual BMC of %s: %w", cfg.Name, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := ch.watch(ctx); err != nil {
			cancel(err)
		}
	}()

	var console hal.ConsoleHAL
	if cfg.ConsoleSocket != "" && cfg.serves(ProtocolIPMI) {
		console = newSerialConsole(cfg.ConsoleSocket, log)
	}
	r := &runner{cfg: cfg, ch: ch, console: console, nic: &nicInfo{}, user: user, password: password, log: log}
	if cfg.serves(ProtocolRedfish) {
		cert, err := serverCertificate(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.Name)
		if err != nil {
			return fmt.Errorf("virtual BMC of %s: %w", cfg.Name, err)
		}
		r.cert = cert
		sessions := newSessionStore(cfg.SessionTimeout, cfg.MaxSessions, cfg.now)
		r.redfish = newRedfishServer(ch, r.nic, sessions, user, password, console != nil, log.With("protocol", "redfish"))
	}
	if cfg.Static.IsValid() {
		err = r.serveStatic(ctx)
	} else {
		err = r.serveDHCP(ctx)
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("virtual BMC of %s: %w", cfg.Name, cause)
	}
	return err
}

func (c *Config) complete() error {
	if c.Name == "" {
		c.Name = c.Domain
	}
	if c.Machine == nil && c.Domain == "" {
		return errors.New("virtual BMC: no libvirt domain given")
	}
	if !c.Static.IsValid() && c.Interface == "" {
		return fmt.Errorf("virtual BMC of %s: neither an interface for DHCP nor a static address", c.Name)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 {
		c.Port = 0
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []Protocol{ProtocolIPMI}
	}
	for _, p := range c.Protocols {
		if p != ProtocolIPMI && p != ProtocolRedfish {
			return fmt.Errorf("virtual BMC of %s: unknown protocol %q (want ipmi or redfish)", c.Name, p)
		}
	}
	if c.RedfishPort == 0 {
		c.RedfishPort = DefaultRedfishPort
	}
	if c.RedfishPort < 0 {
		c.RedfishPort = 0
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("virtual BMC of %s: give both TLS certificate and key files, or neither", c.Name)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return nil
}

// credentials reads the user and password. Errors name the file, never
// the content.
func (c *Config) credentials() (user, password string, err error) {
	read := func(path, value, what string) (string, error) {
		if path == "" {
			return value, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("virtual BMC of %s: while reading the %s file: %w", c.Name, what, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if user, err = read(c.UserFile, c.User, "IPMI user"); err != nil {
		return "", "", err
	}
	if password, err = read(c.PasswordFile, c.Password, "IPMI password"); err != nil {
		return "", "", err
	}
	if user == "" || password == "" {
		return "", "", fmt.Errorf("virtual BMC of %s: the BMC user and password must not be empty", c.Name)
	}
	// IPMI 2.0 limits: 16 bytes of user name, 20 of password. A Redfish-only
	// BMC has no such limit.
	if c.serves(ProtocolIPMI) && len(user) > 16 {
		return "", "", fmt.Errorf("virtual BMC of %s: the IPMI user must have 1 to 16 bytes", c.Name)
	}
	if c.serves(ProtocolIPMI) && len(password) > 20 {
		return "", "", fmt.Errorf("virtual BMC of %s: the IPMI password must have 1 to 20 bytes", c.Name)
	}
	return user, password, nil
}

// runner holds what one BMC serves with, across address changes.
type runner struct {
	cfg            Config
	ch             *chassis
	console        hal.ConsoleHAL
	nic            *nicInfo
	user, password string
	log            *slog.Logger
	redfish        *redfishServer // nil when Redfish is not served
	cert           tls.Certificate
}

// listen starts every protocol the BMC serves on addr; stop closes them.
func (r *runner) listen(ctx context.Context, addr netip.Addr) (stop func(), err error) {
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	if r.cfg.serves(ProtocolIPMI) {
		s, err := r.listenIPMI(ctx, addr)
		if err != nil {
			return nil, err
		}
		stops = append(stops, s)
	}
	if r.redfish != nil {
		s, err := r.listenRedfish(addr)
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, s)
	}
	return stopAll, nil
}

// listenIPMI starts the IPMI server on addr; stop closes it.
func (r *runner) listenIPMI(ctx context.Context, addr netip.Addr) (stop func(), err error) {
	ap := netip.AddrPortFrom(addr, uint16(r.cfg.Port))
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("while listening for IPMI on %s: %w", ap, err)
	}
	srv, err := newIPMIServer(conn, r.ch, r.console, r.nic, r.user, r.password)
	if err != nil {
		conn.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
			r.log.Error("IPMI server stopped", "addr", ap.String(), "err", err)
		}
	}()
	bound := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	r.log.Info("IPMI listening", "addr", bound.String())
	if r.cfg.OnListen != nil {
		r.cfg.OnListen(bound)
	}
	return func() { srv.Close(); <-done }, nil
}

func (r *runner) setNIC(p netip.Prefix, router netip.Addr, dhcp bool) {
	var cfg hal.IPConfig
	cfg.IP = p.Addr().As4()
	copy(cfg.Mask[:], net.CIDRMask(p.Bits(), 32))
	if router.Is4() {
		cfg.Gateway = router.As4()
	}
	if r.cfg.Interface != "" {
		copy(cfg.MAC[:], macOf(r.cfg.Interface))
	}
	cfg.DHCP = dhcp
	cfg.Port = uint16(r.cfg.Port)
	r.nic.set(cfg)
}

func (r *runner) serveStatic(ctx context.Context) error {
	if r.cfg.Interface != "" {
		if err := setAddress(r.cfg.Interface, r.cfg.Static, netip.Addr{}); err != nil {
			return fmt.Errorf("virtual BMC of %s: %w", r.cfg.Name, err)
		}
	}
	r.setNIC(r.cfg.Static, netip.Addr{}, false)
	stop, err := r.listen(ctx, r.cfg.Static.Addr())
	if err != nil {
		return fmt.Errorf("virtual BMC of %s: %w", r.cfg.Name, err)
	}
	defer stop()
	<-ctx.Done()
	return nil
}

// serveDHCP is the BMC's life on a DHCP network: get a lease, serve on it,
// renew it; when it is lost, stop serving and start over.
func (r *runner) serveDHCP(ctx context.Context) error {
	dc, err := dhcpclient.Open(r.cfg.Interface, dhcpOptions)
	if err != nil {
		return fmt.Errorf("virtual BMC of %s: %w", r.cfg.Name, err)
	}
	defer dc.Close()
	for {
		li, err := acquire(ctx, dc, r.log)
		if err != nil {
			return nil // ctx ended
		}
		if err := setAddress(r.cfg.Interface, li.Addr, li.Router); err != nil {
			return fmt.Errorf("virtual BMC of %s: %w", r.cfg.Name, err)
		}
		r.setNIC(li.Addr, li.Router, true)
		stop, err := r.listen(ctx, li.Addr.Addr())
		if err != nil {
			return fmt.Errorf("virtual BMC of %s: %w", r.cfg.Name, err)
		}
		r.holdLease(ctx, dc, li)
		stop()
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("DHCP lease lost, asking again", "addr", li.Addr.String())
		if err := dropAddress(r.cfg.Interface, li.Addr); err != nil {
			r.log.Warn("could not remove the old address", "err", err)
		}
	}
}

// holdLease renews the lease at T1 and retries on failure until it expires,
// changes address or ctx ends.
func (r *runner) holdLease(ctx context.Context, dc *dhcpclient.Client, li dhcpclient.Lease) {
	if li.ValidIn == 0 {
		<-ctx.Done() // infinite lease
		return
	}
	expire := time.Now().Add(li.ValidIn)
	next := li.RenewIn
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(next, time.Until(expire))):
		}
		if !time.Now().Before(expire) {
			return
		}
		nl, err := dc.Renew(ctx)
		if err != nil {
			next = max(time.Until(expire)/2, time.Second)
			r.log.Warn("DHCP renewal failed, retrying", "addr", li.Addr.String(), "next_in", next.String(), "err", err)
			if dhcpclient.IsNak(err) {
				return
			}
			continue
		}
		if nl.Addr != li.Addr {
			return
		}
		if nl.ValidIn == 0 {
			<-ctx.Done()
			return
		}
		expire = time.Now().Add(nl.ValidIn)
		next = nl.RenewIn
	}
}
