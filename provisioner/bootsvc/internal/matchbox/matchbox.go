// Package matchbox embeds poseidon/matchbox v0.11.0 in Racker's boot
// services, as upstream Racker ran it in a container beside dnsmasq: the
// gRPC API that lokoctl's Terraform (its matchbox provider) writes
// profiles and groups into, behind mutual TLS with certificates Racker
// makes in the state folder (pki.go), and the read-only HTTP endpoints
// Lokomotive's nodes use (boot.ipxe, ipxe, ignition; http.go says why they
// are answered here from matchbox's core rather than by its http
// package), which the web server mounts under api.MatchboxPath behind
// Racker's own guard. Matchbox's own code does the rest: its file store,
// its server core (group selection) and its gRPC server.
//
// The door is New(Config) → *Server, then Handler and ServeRPC.
package matchbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/poseidon/matchbox/matchbox/rpc"
	mbserver "github.com/poseidon/matchbox/matchbox/server"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

// Config says where matchbox keeps its data and certificates.
type Config struct {
	StateDir string // required: STATE/matchbox, STATE/matchbox-client
	// Hosts are the addresses the gRPC API is reached at (the management
	// node's); the server certificate names them (and 127.0.0.1).
	Hosts  []netip.Addr
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// Server is an embedded matchbox.
type Server struct {
	pki     PKI
	log     *slog.Logger
	core    mbserver.Server
	handler http.Handler
	rpc     *grpc.Server
}

// New makes or renews the certificates (PKI.Ensure), opens matchbox's file
// store in STATE/matchbox/data and builds its gRPC and HTTP servers.
func New(cfg Config) (*Server, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("starting matchbox: no state folder")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pki := NewPKI(cfg.StateDir)
	renewed, err := pki.Ensure(cfg.Hosts, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("starting matchbox: %w", err)
	}
	if len(renewed) > 0 {
		cfg.Logger.Info("made matchbox certificates", "certificates", renewed, "client_bundle", pki.ClientDir,
			"valid_for", Validity.String())
	}
	tlsCfg, err := pki.ServerTLS()
	if err != nil {
		return nil, fmt.Errorf("starting matchbox: %w", err)
	}
	data := filepath.Join(pki.Dir, "data")
	// The store lists these folders; matchbox creates them only on a write.
	for _, d := range []string{"profiles", "groups", "ignition", "generic"} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o700); err != nil {
			return nil, fmt.Errorf("starting matchbox: %w", err)
		}
	}
	lr := logrusTo(cfg.Logger)
	core := mbserver.NewServer(&mbserver.Config{Store: storage.NewFileStore(&storage.Config{Root: data, Logger: lr})})
	s := &Server{
		pki: pki, log: cfg.Logger, core: core,
		rpc: rpc.NewServer(core, tlsCfg),
	}
	// The OS images are Racker's own /assets (the profiles'
	// "/assets/flatcar/VERSION/…" paths resolve there), so no assets here.
	s.handler = newHandler(core, s)
	return s, nil
}

// PKI names the certificate files.
func (s *Server) PKI() PKI { return s.pki }

// Handler is matchbox's HTTP endpoints (http.go), rooted at "/": mount it
// under a prefix with http.StripPrefix.
func (s *Server) Handler() http.Handler { return s.handler }

// Selects says whether a group registered in matchbox selects mac by
// name (Lokomotive's install and node groups do), with the profile it
// names present: then matchbox, not Racker's own install, boots the node.
// A catch-all group (no selector) does not count: Racker hands a node to
// matchbox only when lokoctl registered that node.
func (s *Server) Selects(mac string) bool {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return false
	}
	labels := map[string]string{"mac": hw.String()}
	g, err := s.core.SelectGroup(context.Background(), &serverpb.SelectGroupRequest{Labels: labels})
	if err != nil || !strings.EqualFold(g.Selector["mac"], hw.String()) {
		return false
	}
	_, err = s.core.SelectProfile(context.Background(), &serverpb.SelectProfileRequest{Labels: labels})
	return err == nil
}

// SelectedMACs is every MAC that Selects would say true for, from one
// pass over the groups and profiles (a node list asks for all of them):
// a group whose only selector is the MAC, naming a profile that exists.
func (s *Server) SelectedMACs() map[string]bool {
	ctx := context.Background()
	groups, err := s.core.GroupList(ctx, &serverpb.GroupListRequest{})
	if err != nil {
		return nil
	}
	profiles, err := s.core.ProfileList(ctx, &serverpb.ProfileListRequest{})
	if err != nil {
		return nil
	}
	have := map[string]bool{}
	for _, p := range profiles {
		have[p.Id] = true
	}
	out := map[string]bool{}
	for _, g := range groups {
		hw, err := net.ParseMAC(g.Selector["mac"])
		if err == nil && len(g.Selector) == 1 && have[g.Profile] {
			out[hw.String()] = true
		}
	}
	return out
}

// ServeRPC answers the gRPC API on ln until ctx ends, then stops
// gracefully (calls in flight finish, up to 5 s).
func (s *Server) ServeRPC(ctx context.Context, ln net.Listener) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { s.rpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.rpc.Stop()
		}
	}()
	err := s.rpc.Serve(ln)
	if ctx.Err() != nil {
		<-done
		return nil
	}
	s.rpc.Stop()
	return fmt.Errorf("serving matchbox's gRPC API on %s: %w", ln.Addr(), err)
}

// logrusTo gives matchbox, which logs with logrus, Racker's logger:
// every entry goes to log as one record at the matching level.
func logrusTo(log *slog.Logger) *logrus.Logger {
	l := logrus.New()
	l.Out = io.Discard
	l.Level = logrus.DebugLevel
	l.AddHook(slogHook{log.With("part", "matchbox")})
	return l
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	args := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		args = append(args, k, v)
	}
	h.log.Log(context.Background(), level, e.Message, args...)
	return nil
}
