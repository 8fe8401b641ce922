package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/ignition"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, name string, h http.HandlerFunc) {
		mux.Handle(pattern, s.counted(name, h))
	}
	handle("GET /boot.ipxe", "boot.ipxe", s.serveBootIPXE)
	handle("GET /ipxe", "ipxe", s.serveIPXE)
	handle("GET /ignition", "ignition", s.serveIgnition)
	handle("GET /assets/", "assets", s.serveAsset)
	handle("POST /api/v1/events", "events_post", s.postEvent)
	handle("GET /api/v1/events", "events_get", s.getEvents)
	handle("GET /api/v1/nodes", "nodes", s.getNodes)
	handle("GET /api/v1/release", "release", s.getRelease)
	handle("GET /api/v1/nodes/{mac}", "node", s.getNode)
	handle("POST /api/v1/nodes/{mac}/reinstall", "reinstall", s.postReinstall)
	handle("POST /api/v1/plan/reload", "plan_reload", s.postReload)
	handle("GET "+api.MatchboxPath+"/", "matchbox", s.serveMatchbox)
	handle("POST /api/v1/nodes/{mac}/netboot", "netboot", s.postNetboot)
	handle("GET /healthz", "healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	metrics := promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})
	handle("GET /metrics", "metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.fromManagement(w, r) {
			metrics.ServeHTTP(w, r)
		}
	})
	return mux
}

// counted counts answers by handler and status code.
func (s *Server) counted(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer has a write deadline; assets and long polls move it.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		h(cw, r)
		s.metrics.Request(name, cw.code)
		s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "code", cw.code, "bytes", cw.bytes, "from", r.RemoteAddr)
		if name == "assets" {
			s.metrics.Asset(cw.bytes)
		}
	})
}

// remoteAddr is the requester's address (no proxies sit between a node
// and Racker, so forwarded headers are never trusted).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// mayActFor says whether a request comes from the node itself: its
// planned address or its current lease.
func (s *Server) mayActFor(r *http.Request, n plan.Node) bool {
	from := remoteAddr(r)
	if !from.IsValid() {
		return false
	}
	if from == n.IP {
		return true
	}
	if s.cfg.LeaseOf != nil {
		if ip, ok := s.cfg.LeaseOf(n.PrimaryMAC); ok && ip == from {
			return true
		}
	}
	return false
}

// isAdmin says whether a request comes from the management node itself
// (loopback or its planned address): only it may change a node's target.
func (s *Server) isAdmin(r *http.Request) bool {
	from := remoteAddr(r)
	return from.IsLoopback() || (from.IsValid() && from == s.cfg.Plan.Management.IP)
}

// record journals ev as sent by r's requester.
func (s *Server) record(r *http.Request, ev api.Event) {
	ev.Source = r.RemoteAddr
	s.store.Record(ev)
}

// served records which iPXE script a MAC was answered with; the message
// repeats it for people. What a node asks outside its boot window, and
// what unknown MACs ask, is recorded once a minute per MAC at most (and
// 50 a second overall): anyone can ask in any MAC's name.
func (s *Server) served(r *http.Request, mac string, script api.Script) {
	if script == api.ScriptUnknown || script == api.ScriptNoWindow || !s.store.inWindow(mac) {
		if ok, _ := s.observed.allow(mac, s.store.now()); !ok {
			s.metrics.Dropped("ipxe_not_recorded")
			return
		}
	}
	s.record(r, api.Event{MAC: mac, Kind: api.KindIPXE, Script: script, Message: string(script)})
}

func (s *Server) serveBootIPXE(w http.ResponseWriter, r *http.Request) {
	writeText(w, bootScript(s.base))
}

func (s *Server) serveIPXE(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("mac")
	mac, err := inventory.NormalizeMAC(raw)
	if err != nil {
		s.log.Warn("iPXE script asked for without a valid MAC", "mac", scriptSafe(raw), "from", r.RemoteAddr)
		s.served(r, scriptSafe(raw), api.ScriptUnknown)
		writeText(w, unknownScript("no valid MAC in the request ("+raw+")"))
		return
	}
	n, ok := s.store.nodeByNIC(mac)
	if ok && n.PrimaryMAC != mac {
		s.log.Info("iPXE named a node's secondary MAC; answering for its primary", "mac", mac, "primary_mac", n.PrimaryMAC)
		mac = n.PrimaryMAC
	}
	if !ok {
		s.log.Info("iPXE script for a machine that is not a planned node", "mac", mac, "from", r.RemoteAddr)
		s.served(r, mac, api.ScriptUnknown)
		writeText(w, unknownScript(mac+" is not a node of this rack's plan (add it to nodes.csv, or it is excluded)"))
		return
	}
	if s.store.target(mac).Target == api.TargetDisk {
		s.served(r, mac, api.ScriptDisk)
		writeText(w, diskScript(mac))
		return
	}
	if !s.store.inWindow(mac) {
		s.served(r, mac, api.ScriptNoWindow)
		writeText(w, noWindowScript(s.base, mac))
		return
	}
	if s.cfg.Matchbox != nil && s.cfg.Matchbox.Selects(mac) {
		// lokoctl registered this node: matchbox's profile installs it.
		s.served(r, mac, api.ScriptMatchbox)
		writeText(w, matchboxScript(s.base))
		return
	}
	if s.cfg.Release == nil {
		s.log.Error("a node wants to install but no OS release is available", "mac", mac)
		s.served(r, mac, api.ScriptWait)
		writeText(w, waitScript(s.base, mac))
		return
	}
	s.served(r, mac, api.ScriptInstall)
	writeText(w, installScript(s.base, mac, s.cfg.Release.OS, s.cfg.Release.Version, s.console(n.Type)))
}

func (s *Server) console(nodeType string) string {
	c := s.cfg.Types[nodeType].Console
	switch c {
	case "":
		return DefaultConsole
	case "-":
		return ""
	}
	return c
}

func (s *Server) serveIgnition(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	mac, err := inventory.NormalizeMAC(q.Get("mac"))
	if err != nil {
		http.Error(w, "mac: "+err.Error(), http.StatusBadRequest)
		return
	}
	phase := api.IgnitionPhase(q.Get("phase"))
	if phase != api.IgnitionInstall && phase != api.IgnitionBoot {
		http.Error(w, "phase must be install or boot", http.StatusBadRequest)
		return
	}
	n, ok := s.store.node(mac)
	if !ok {
		http.Error(w, mac+" is not a node of this rack's plan", http.StatusNotFound)
		return
	}
	log := s.log.With("mac", mac, "node", n.Hostname, "phase", phase, "from", r.RemoteAddr)
	what := "ignition phase=" + string(phase) + " of " + mac
	switch {
	case !s.mayActFor(r, n):
		s.refuse(w, r, mac, what+": not the node's address")
		return
	case phase == api.IgnitionBoot && !s.store.tokenOK(mac, r):
		s.refuse(w, r, mac, what+": without the node's token")
		return
	case !s.store.inWindow(mac):
		s.refuse(w, r, mac, what+": no boot window is open for "+mac)
		return
	}
	// Build first (an operator's broken snippet is a 500 and can be fixed
	// and fetched again), then claim: served once per install generation.
	t := s.store.target(mac)
	var cfg []byte
	if phase == api.IgnitionInstall {
		cfg, err = s.installConfig(n, t)
	} else {
		cfg, err = s.bootConfig(n, t)
	}
	if err != nil {
		log.Error("could not build the Ignition config", "err", err)
		http.Error(w, "could not build the config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	claimed, err := s.store.claim(mac, phase)
	if errors.Is(err, ErrRefused) {
		s.refuse(w, r, mac, strings.TrimPrefix(err.Error(), ErrRefused.Error()+": "))
		return
	}
	if err != nil {
		log.Error("could not record the config as served", "err", err)
		http.Error(w, "could not record the config as served", http.StatusServiceUnavailable)
		return
	}
	if claimed.Token != t.Token { // a new generation began between build and claim
		s.refuse(w, r, mac, what+": its install generation changed")
		return
	}
	s.record(r, api.Event{MAC: mac, Kind: api.KindIgnition, Ignition: phase, Message: string(phase)})
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(cfg)
}

func (s *Server) installConfig(n plan.Node, t nodeTarget) ([]byte, error) {
	if s.cfg.Release == nil {
		return nil, errors.New("no OS release is configured")
	}
	return ignition.Install(ignition.InstallParams{
		MAC: n.PrimaryMAC, BaseURL: s.base, OS: s.cfg.Release.OS, Version: s.cfg.Release.Version,
		Disk: s.cfg.Types[n.Type].InstallDisk, WipeAll: t.WipeAll, Token: t.Token, SigningKey: s.cfg.Release.SigningKey,
	})
}

func (s *Server) bootConfig(n plan.Node, t nodeTarget) ([]byte, error) {
	keys, err := ignition.SSHKeys(s.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	snippets, err := ignition.Snippets(s.cfg.StateDir, n.Type, n.PrimaryMAC)
	if err != nil {
		return nil, err
	}
	s.store.mu.Lock()
	bits := s.store.plan.Subnet.Bits()
	s.store.mu.Unlock()
	return ignition.Boot(ignition.BootParams{
		MAC: n.PrimaryMAC, BaseURL: s.base, Hostname: n.Hostname,
		Address: netip.PrefixFrom(n.IP, bits), SSHKeys: keys, Snippets: snippets,
		Labels: map[string]string{"role": string(n.Role), "node_type": n.Type, "storage": fmt.Sprint(n.Storage)},
		Token:  t.Token,
	})
}

// serveAsset serves /assets/ipxe/FILE and /assets/OS/VERSION/FILE straight
// from the file (Range requests, sendfile), never from memory (images.go).
// The release is also under /assets/flatcar/VERSION/, where Lokomotive's
// profiles and its cached install look for it: the test OS stands in for
// Flatcar there.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/assets/"), "/")
	var f *os.File
	var err error
	switch {
	case len(parts) == 2 && parts[0] == "ipxe" && s.cfg.IPXEDir != "" && validFileName(parts[1]):
		f, err = os.Open(filepath.Join(s.cfg.IPXEDir, parts[1]))
	case len(parts) == 3 && s.cfg.Release != nil && (parts[0] == s.cfg.Release.OS || parts[0] == api.OSFlatcar) && parts[1] == s.cfg.Release.Version:
		f, err = s.cfg.Release.Open(parts[2])
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Error("could not open an asset", "path", r.URL.Path, "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	serveFile(progressDeadlines(w), r, f, st)
}

func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00")
}

func writeText(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, s)
}

// countingWriter remembers the status code and counts body bytes, keeping
// the sendfile path (ReadFrom) of the underlying writer.
type countingWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.bytes += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(c.ResponseWriter, r)
	}
	c.bytes += n
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
