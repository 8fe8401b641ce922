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
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The scale bench's simulated nodes. The hardware is simulated (firmware,
// boots and the disk write are sleeps of the scaled real times,
// scale_config.go), the protocols are not: each node speaks real DHCP (raw
// socket in the client namespace) and real HTTP from its planned address
// to the real `racker serve`, and downloads the whole (scaled) OS image,
// so what is measured is Racker (orchestrator, BMC driver, boot services)
// plus the bench's own clients.

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
	set    scaleSettings
	image  string // the image's URL path
	tail   []byte // the image's last bytes, checked after each download

	dhcpTries    atomic.Int64 // DHCP exchanges attempted (a lost one is retried)
	dhcpTimeouts atomic.Int64
	requests     atomic.Int64 // HTTP requests made by nodes

	dl downloads

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
// the background, as a machine runs after the BMC's command returns, and
// begins with the firmware's POST.
func (n *simNode) start(dev bootDevice) {
	n.mu.Lock()
	n.gen++
	g, installed := n.gen, n.installed
	if n.firstDev == "" {
		n.firstDev = dev
	}
	n.mu.Unlock()
	go func() {
		if !n.sleep(g, n.sim.set.POST) {
			return
		}
		if err := n.boot(g, dev, installed); err != nil && n.sim.ctx.Err() == nil {
			n.sim.fail(fmt.Errorf("node %s (%s): %w", n.host, n.mac, err))
		}
	}()
}

// sleep spends a real time, scaled, as boot generation g; false when the
// node was powered off or reset meanwhile (or the run ended).
func (n *simNode) sleep(g int, real time.Duration) bool {
	t := time.NewTimer(n.sim.set.scaled(real))
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.sim.ctx.Done():
		return false
	}
	return n.current(g)
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
// boot, its Ignition, the installing callback, the image download and the
// write, the installed callback, and a reboot. The live system's kernel
// and initrd downloads are left out: the image is the big file, and what
// Racker serves it at is the figure.
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
	if !n.sleep(g, n.sim.set.Live) {
		return nil
	}
	if err := n.ignition(c, "install"); err != nil {
		return err
	}
	if err := n.post(c, api.KindInstalling); err != nil {
		return err
	}
	if err := n.download(c); err != nil {
		return err
	}
	if !n.sleep(g, n.sim.set.Install) {
		return nil
	}
	if err := n.post(c, api.KindInstalled); err != nil {
		return err
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
	if !n.sleep(g, n.sim.set.Boot) {
		return nil
	}
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
	for try := 0; try < 3; try++ {
		n.sim.dhcpTries.Add(1)
		ok, timeouts := n.sim.dhcp.exchange(mac, dhcpTry, dhcpBudget)
		n.sim.dhcpTimeouts.Add(int64(timeouts))
		if ok || n.sim.ctx.Err() != nil {
			return nil
		}
	}
	return fmt.Errorf("no DHCP answer for %s in 3 tries of %s", n.mac, dhcpBudget)
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
