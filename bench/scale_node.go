package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/simulator/vbmc"
)

// The scale bench's simulated nodes. The hardware is simulated (a node does
// its work in no time of its own), the protocols are not: each node speaks
// real DHCP (raw socket in the client namespace) and real HTTP from its
// planned address to the real `racker serve`, so what is measured is Racker
// (orchestrator, BMC driver, boot services) plus the bench's own clients.

// bootDevice is what the simulated firmware boots: "pxe", "disk" or
// "default" (the machine's own order: disk first, then network, as the
// simulator's machines and vbmc.BootDefault have it).
type bootDevice string

const (
	devPXE     bootDevice = "pxe"
	devDisk    bootDevice = "disk"
	devDefault bootDevice = "default"
)

// scaleSim is what every simulated node shares: where Racker is, the
// client namespace, the DHCP client socket, and the run's counters.
type scaleSim struct {
	ctx    context.Context
	cancel context.CancelFunc // ends the run when a node fails
	base   string             // http://MGMT:8080
	ns     string             // the client namespace
	dhcp   *dhcpLoad

	dhcpTries atomic.Int64 // DHCP exchanges attempted (a lost one is retried)
	requests  atomic.Int64 // HTTP requests made by nodes

	errMu sync.Mutex
	errs  []error
}

// fail records a node's error; the run reports the first ones.
func (s *scaleSim) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err)
	}
	s.cancel()
}

func (s *scaleSim) firstErrors() []error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return append([]error(nil), s.errs...)
}

// clientFrom is an HTTP client whose connections come from ip inside the
// client namespace, as the node's own requests would: Racker only accepts
// a node's callbacks and Ignition fetches from its planned address.
func (s *scaleSim) clientFrom(ip netip.Addr) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netenv.Do(s.ns, func() error {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1, DisableCompression: true}}
}

// simNode plays one node: its firmware, iPXE, the live installer and the
// installed OS, each reduced to the requests they make.
type simNode struct {
	sim  *scaleSim
	mac  string
	host string
	ip   netip.Addr
	// reboot restarts the node the way its OS's `systemctl reboot` does:
	// the firmware starts again and reads the BMC's boot flags.
	reboot func()

	mu        sync.Mutex
	gen       int // bumped at each power on/off: an older boot stops
	installed bool
	installs  int
	booted    int
	// firstDev is what the firmware booted at the node's first power-on:
	// PXE when the orchestrator's boot flags went through the BMC.
	firstDev bootDevice
	// token is the node's secret from its install config, presented by
	// the boot-phase fetch and the callbacks, as the real OS does.
	token string
}

// start powers the node on (or resets it) with dev first: the boot runs in
// the background, as a machine runs after the BMC's command returns.
func (n *simNode) start(dev bootDevice) {
	n.mu.Lock()
	n.gen++
	g, installed := n.gen, n.installed
	if n.firstDev == "" {
		n.firstDev = dev
	}
	n.mu.Unlock()
	go func() {
		if err := n.boot(g, dev, installed); err != nil && n.sim.ctx.Err() == nil {
			n.sim.fail(fmt.Errorf("node %s (%s): %w", n.host, n.mac, err))
		}
	}()
}

// halt cuts the power: a boot in progress goes no further.
func (n *simNode) halt() {
	n.mu.Lock()
	n.gen++
	n.mu.Unlock()
}

// current says whether the boot started as generation g still runs.
func (n *simNode) current(g int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen == g && n.sim.ctx.Err() == nil
}

func (n *simNode) boot(g int, dev bootDevice, installed bool) error {
	// An empty disk falls through to the network, as firmware does.
	if dev == devPXE || !installed {
		return n.netboot(g)
	}
	return n.diskBoot(g)
}

// netboot is firmware PXE (a full DHCP exchange), iPXE (/boot.ipxe, then
// the node's script) and, when Racker says install, the live system: its
// Ignition, the installing and installed callbacks, and a reboot. The
// kernel and initrd downloads are left out (the HTTP section measures
// image transfers).
func (n *simNode) netboot(g int) error {
	if err := n.dhcpExchange(); err != nil {
		return err
	}
	if !n.current(g) {
		return nil
	}
	c := n.sim.clientFrom(n.ip)
	defer c.CloseIdleConnections()
	script, err := n.get(c, "/boot.ipxe")
	if err != nil {
		return err
	}
	if !strings.Contains(script, "/ipxe?mac=") {
		return fmt.Errorf("/boot.ipxe does not chain to /ipxe?mac=: %q", script)
	}
	if script, err = n.get(c, "/ipxe?mac="+n.mac); err != nil {
		return err
	}
	if !strings.Contains(script, "kernel ") {
		if strings.Contains(script, "\nexit\n") {
			return n.diskBoot(g) // Racker says: installed, boot from disk
		}
		return fmt.Errorf("unexpected iPXE script: %q", script)
	}
	if !n.current(g) {
		return nil
	}
	if err := n.ignition(c, "install"); err != nil {
		return err
	}
	for _, ev := range []api.EventKind{api.KindInstalling, api.KindInstalled} {
		if !n.current(g) {
			return nil
		}
		if err := n.post(c, ev); err != nil {
			return err
		}
	}
	n.mu.Lock()
	n.installed = true
	n.installs++
	n.mu.Unlock()
	if n.current(g) {
		n.reboot()
	}
	return nil
}

// diskBoot is the installed OS's first boot: its Ignition (phase boot),
// then the booted callback.
func (n *simNode) diskBoot(g int) error {
	c := n.sim.clientFrom(n.ip)
	defer c.CloseIdleConnections()
	if err := n.ignition(c, "boot"); err != nil {
		return err
	}
	if !n.current(g) {
		return nil
	}
	if err := n.post(c, api.KindBooted); err != nil {
		return err
	}
	n.mu.Lock()
	n.booted++
	n.mu.Unlock()
	return nil
}

// dhcpExchange is the firmware's DHCP: retried like PXE ROMs do when an
// answer is lost.
func (n *simNode) dhcpExchange() error {
	mac, _ := net.ParseMAC(n.mac)
	for try := 0; try < 5; try++ {
		n.sim.dhcpTries.Add(1)
		if n.sim.dhcp.exchange(mac, 2*time.Second) {
			return nil
		}
		if n.sim.ctx.Err() != nil {
			return nil
		}
	}
	return fmt.Errorf("no DHCP answer for %s after 5 tries", n.mac)
}

func (n *simNode) get(c *http.Client, path string) (string, error) {
	n.sim.requests.Add(1)
	req, err := http.NewRequestWithContext(n.sim.ctx, http.MethodGet, n.sim.base+path, nil)
	if err != nil {
		return "", err
	}
	if tok := n.currentToken(); tok != "" {
		req.Header.Set(api.TokenHeader, api.TokenScheme+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", path, n.ip, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", path, n.ip, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s from %s: %s: %s", path, n.ip, resp.Status, b)
	}
	return string(b), nil
}

// ignition fetches the node's config for phase and checks it is an
// Ignition v3 config, as the live system or the installed OS would.
func (n *simNode) ignition(c *http.Client, phase string) error {
	body, err := n.get(c, "/ignition?mac="+n.mac+"&phase="+phase)
	if err != nil {
		return err
	}
	var cfg struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal([]byte(body), &cfg); err != nil || !strings.HasPrefix(cfg.Ignition.Version, "3.") {
		return fmt.Errorf("ignition phase %s: not an Ignition v3 config (%v): %.200s", phase, err, body)
	}
	if phase == "install" {
		// The token is in install.sh (TOKEN='…'), base64 inside the config.
		tok, err := installToken(body)
		if err != nil {
			return fmt.Errorf("ignition phase install: %w", err)
		}
		n.mu.Lock()
		n.token = tok
		n.mu.Unlock()
	}
	return nil
}

func (n *simNode) currentToken() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.token
}

// installToken finds TOKEN='…' in the install config's install.sh.
func installToken(cfgJSON string) (string, error) {
	var cfg struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source string `json:"source"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return "", err
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != "/opt/racker/install.sh" {
			continue
		}
		b64, _ := strings.CutPrefix(f.Contents.Source, "data:;base64,")
		script, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return "", err
		}
		_, rest, ok := strings.Cut(string(script), "\nTOKEN='")
		tok, _, ok2 := strings.Cut(rest, "'")
		if ok && ok2 && tok != "" {
			return tok, nil
		}
	}
	return "", errors.New("no TOKEN in install.sh")
}

func (n *simNode) post(c *http.Client, ev api.EventKind) error {
	n.sim.requests.Add(1)
	ac := api.NewClient(n.sim.base)
	ac.HTTP = c
	if err := ac.PostEvent(n.sim.ctx, api.Callback{MAC: n.mac, Event: ev}, n.currentToken()); err != nil {
		return fmt.Errorf("callback %s from %s: %w", ev, n.ip, err)
	}
	return nil
}

// counts returns how often the node installed and booted from disk, and
// what its firmware booted first.
func (n *simNode) counts() (installs, booted int, first bootDevice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.installs, n.booted, n.firstDev
}

// --- fake:// BMCs (a fake, for the scale test only) ---

// fakeHooked is a node's BMC through provisioner/bmc's real fake:// driver
// (opened by orchestrator.ControllerOpener like any other driver), with the
// machine behind it: a power on, cycle or reset starts the simulated node
// with the device the firmware picks from the fake BMC's flags.
type fakeHooked struct {
	orchestrator.BMC
	fake *bmc.FakeBMC
	node *simNode
}

func (h fakeHooked) Power(ctx context.Context, action string) error {
	wasOn := h.fake.Power() == bmc.PowerOn
	if err := h.BMC.Power(ctx, action); err != nil {
		return err
	}
	switch bmc.PowerAction(action) {
	case bmc.ActionOn:
		if !wasOn {
			h.node.start(firmwareDevice(h.fake))
		}
	case bmc.ActionCycle, bmc.ActionReset:
		h.node.start(firmwareDevice(h.fake))
	case bmc.ActionOff:
		h.node.halt()
	}
	return nil
}

// firmwareDevice is what the firmware boots given the fake BMC's flags;
// like a real BMC it uses next-boot-only flags up.
func firmwareDevice(f *bmc.FakeBMC) bootDevice {
	fl := f.Flags()
	if !fl.Valid {
		return devDefault
	}
	if !fl.Persistent {
		used := fl
		used.Valid = false
		f.SetFlags(used)
	}
	switch fl.Device {
	case bmc.DevicePXE:
		return devPXE
	case bmc.DeviceDisk:
		return devDisk
	}
	return devDefault
}

// --- in-memory machines behind real IPMI servers (vbmc) ---

// simMachine is the machine behind a real virtual BMC (simulator/vbmc over
// UDP on loopback): the BMC's chassis logic (boot flags, next-boot-only
// flags used up, restart after a guest reboot) is the real one; the
// machine is the simulated node.
type simMachine struct {
	node   *simNode
	mu     sync.Mutex
	on     bool
	events chan vbmc.GuestEvent
}

func newSimMachine(n *simNode) *simMachine {
	m := &simMachine{node: n, events: make(chan vbmc.GuestEvent, 4)}
	n.reboot = m.guestReboot
	return m
}

func (m *simMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *simMachine) Start(_ context.Context, first vbmc.BootDevice) error {
	m.mu.Lock()
	m.on = true
	m.mu.Unlock()
	dev := devDefault
	switch first {
	case vbmc.BootPXE:
		dev = devPXE
	case vbmc.BootDisk:
		dev = devDisk
	}
	m.node.start(dev)
	return nil
}

func (m *simMachine) Stop(context.Context) error {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	m.node.halt()
	return nil
}

func (m *simMachine) Shutdown(ctx context.Context) error { return m.Stop(ctx) }

func (m *simMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	out := make(chan vbmc.GuestEvent)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-m.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// guestReboot is the OS rebooting itself: the machine goes off and tells
// the BMC, which starts it again with its current flags.
func (m *simMachine) guestReboot() {
	m.mu.Lock()
	m.on = false
	m.mu.Unlock()
	select {
	case m.events <- vbmc.GuestReset:
	case <-m.node.sim.ctx.Done():
	}
}
