// Package ui is Racker's rack view in the browser: every server drawn as a
// unit of a rack in nodes.csv order, coloured by its provisioning phase,
// with the whole bootstrap's progress, a node's story on click (its
// transitions and causes, failure reason, last events, console tail) and
// the boot services' event stream, all updating live.
//
// It is read-only, and it reads what `racker status` reads, through the
// status package (Local), so the two never disagree. The page is drawn by
// the server (first paint needs no script), kept current over Server-Sent
// Events, and without JavaScript it is a plain table that refreshes itself.
// Its files are embedded: no CDN, no build step. racker serve runs it on a
// listener of its own, never on the internal PXE network (CheckAddr);
// anywhere but loopback it asks for the token of `racker ui token`.
//
// The door is Config, New and Server.Serve.
package ui

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
)

//go:embed assets
var assetFS embed.FS

// Config says what the view shows and who may see it.
type Config struct {
	Source Source // required
	// TokenDir, when set, is the state folder whose token (TokenFile)
	// every request must carry: the view listens beyond loopback.
	TokenDir string
	// Poll is how often the status is merged while a page watches
	// (default 1 s); boot-service events trigger a merge at once.
	Poll   time.Duration
	Logger *slog.Logger
}

// Server is the view's HTTP handler and its live-update hub.
type Server struct {
	cfg     Config
	log     *slog.Logger
	hub     *hub
	tmpl    *template.Template
	assets  map[string]asset
	version string // of the assets, in their URLs, so browsers cache them for good
	handler http.Handler
}

type asset struct {
	body, gz []byte
	ctype    string
}

// New builds the view.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("starting the rack view: no source")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hub: newHub(cfg.Source, cfg.Poll, cfg.Logger), assets: map[string]asset{}}
	if err := s.loadAssets(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /node/{mac}", s.nodePage)
	mux.HandleFunc("GET /assets/{name}", s.asset)
	mux.HandleFunc("GET /api/rack", s.rackJSON)
	mux.HandleFunc("GET /api/nodes/{mac}", s.nodeJSON)
	mux.HandleFunc("GET /api/stream", s.stream)
	var h http.Handler = mux
	if cfg.TokenDir != "" {
		h = requireToken(cfg.TokenDir, h, func(err error) { s.log.Error("rack view: token", "err", err) })
	}
	s.handler = securityHeaders(h)
	return s, nil
}

func (s *Server) loadAssets() error {
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
	sum := sha256.New()
	for _, name := range []string{"style.css", "nojs.css", "app.js"} {
		b, err := assetFS.ReadFile("assets/" + name)
		if err != nil {
			return fmt.Errorf("starting the rack view: %w", err)
		}
		sum.Write(b)
		s.assets[name] = asset{body: b, gz: gzipped(b, gzip.BestCompression), ctype: types[name[strings.LastIndexByte(name, '.'):]]}
	}
	s.version = hex.EncodeToString(sum.Sum(nil))[:12]
	funcs := template.FuncMap{"dash": dash, "phaseClass": phaseClass, "phaseText": phaseText, "roleType": roleType,
		"bmcText": bmcText, "osText": osText, "note": note, "age": age, "clock": clock, "stamp": stamp,
		"unitID": unitID, "active": func(r Rack) int { return r.Servers - r.Left }, "row": row}
	t, err := template.New("page").Funcs(funcs).ParseFS(assetFS, "assets/page.html.tmpl")
	if err != nil {
		return fmt.Errorf("starting the rack view: %w", err)
	}
	s.tmpl = t
	return nil
}

// ServeHTTP serves the view.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Run keeps the live updates going (the boot services' event follower and
// the status refresh) until ctx ends. Serve calls it.
func (s *Server) Run(ctx context.Context) { s.hub.run(ctx) }

// Serve runs the view on ln until ctx ends, then closes it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10,
		BaseContext: func(net.Listener) context.Context { return ctx }, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go s.Run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the rack view: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx) // the event streams end with ctx
	return nil
}

// page is what the templates get.
type page struct {
	Title    string
	V        string
	Script   bool
	Rack     Rack
	Units    []unitView   // the plain table
	Cabinets [][]unitView // the drawing, blank plates included
	Blank    unitView     // app.js's template of a unit
	Detail   *Detail
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	rack, err := s.hub.current(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	title := "Racker: the rack"
	if rack.Cluster != "" {
		title = "Racker: " + rack.Cluster
	}
	units := viewUnits(rack)
	s.render(w, r, "index", page{Title: title, V: s.version, Script: true, Rack: rack, Units: units,
		Cabinets: cabinets(units), Blank: viewUnit(Unit{}, rack.Now)})
}

func (s *Server) nodePage(w http.ResponseWriter, r *http.Request) {
	d, rack, err := s.detail(r.Context(), r.PathValue("mac"))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, r, "node", page{Title: "Racker: " + dash(d.Unit.Hostname), V: s.version, Rack: rack, Detail: d})
}

func (s *Server) rackJSON(w http.ResponseWriter, r *http.Request) {
	rack, err := s.hub.current(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	s.writeJSON(w, r, rack)
}

func (s *Server) nodeJSON(w http.ResponseWriter, r *http.Request) {
	d, _, err := s.detail(r.Context(), r.PathValue("mac"))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.writeJSON(w, r, d)
}

// Bounds of a node's story: enough to read what happened, small enough
// to refresh every two seconds.
const (
	maxTransitions = 60
	consoleTail    = 24 << 10
)

// errNoNode is a MAC the view does not show.
var errNoNode = errors.New("no such node")

// detail collects one node's story.
func (s *Server) detail(ctx context.Context, mac string) (*Detail, Rack, error) {
	rack, err := s.hub.current(ctx)
	if err != nil {
		return nil, rack, err
	}
	norm, err := inventory.NormalizeMAC(mac)
	if err != nil {
		return nil, rack, fmt.Errorf("%w: %q is not a MAC address", errNoNode, mac)
	}
	u, ok := rack.unit(norm)
	if !ok {
		return nil, rack, fmt.Errorf("%w: %s is not in the rack", errNoNode, norm)
	}
	d := &Detail{Unit: u, Now: rack.Now, Transitions: []orchestrator.Transition{}, Events: s.hub.nodeEvents(norm, u.BMCMAC)}
	ts, err := s.cfg.Source.Transitions(ctx)
	if err != nil {
		return nil, rack, fmt.Errorf("reading the transition log: %w", err)
	}
	for _, t := range ts {
		if t.MAC == norm {
			d.Transitions = append(d.Transitions, t)
		}
	}
	if len(d.Transitions) > maxTransitions {
		d.Transitions = d.Transitions[len(d.Transitions)-maxTransitions:]
	}
	if u.Hostname != "" {
		c, err := s.cfg.Source.Console(u.Hostname, consoleTail)
		switch {
		case err == nil:
			d.Console = c
		case !errors.Is(err, os.ErrNotExist):
			s.log.Warn("rack view: reading a console log", "node", u.Hostname, "err", err)
		}
	}
	return d, rack, nil
}

// stream is the live view: the rack on every change and the boot
// services' events as they come, as Server-Sent Events.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming not supported", http.StatusInternalServerError)
		return
	}
	msgs, cancel, err := s.hub.watch(r.Context())
	if errors.Is(err, errTooManyWatchers) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "retry: 2000\n\n")
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return // dropped or stopping: the browser reconnects
			}
			if _, err := w.Write(m); err != nil {
				return
			}
			// Send what is queued at once, in one flush.
			for more := true; more; {
				select {
				case m, ok := <-msgs:
					if !ok {
						flusher.Flush()
						return
					}
					w.Write(m)
				default:
					more = false
				}
			}
		case <-keepalive.C:
			io.WriteString(w, ": keepalive\n\n")
		}
		flusher.Flush()
	}
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	a, ok := s.assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == s.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", `"`+s.version+`"`)
	if r.Header.Get("If-None-Match") == `"`+s.version+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeBody(w, r, a.body, a.gz)
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		s.fail(w, fmt.Errorf("rendering the rack view: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, r, buf.Bytes(), nil)
}

func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, fmt.Errorf("encoding the rack view: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, r, b, nil)
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, errNoNode) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	s.log.Warn("rack view", "err", err)
	http.Error(w, "the rack view cannot read Racker's state: "+err.Error(), http.StatusInternalServerError)
}

// writeBody sends b, gzipped when the client takes it (gz: b compressed
// already). Pages of a big rack shrink about tenfold.
func writeBody(w http.ResponseWriter, r *http.Request, b, gz []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if len(b) < 1024 || !acceptsGzip(r) {
		w.Write(b)
		return
	}
	if gz == nil {
		gz = gzipped(b, gzip.BestSpeed)
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.Write(gz)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if strings.TrimSpace(strings.SplitN(part, ";", 2)[0]) == "gzip" {
			return true
		}
	}
	return false
}

func gzipped(b []byte, level int) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, level)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// securityHeaders: scripts, styles and connections from the view itself
// only (no inline script, nothing from elsewhere), never framed, and no
// Referer that could carry the address to another site.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
