package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/status"
)

// Source is everything the view reads. Local is the real one; tests fake it.
type Source interface {
	// Rack returns the plan (nil when there is none) and the merged status,
	// as `racker status` computes it.
	Rack(ctx context.Context) (*plan.Plan, status.Status, error)
	// Transitions returns the orchestrator's logged phase transitions.
	Transitions(ctx context.Context) ([]orchestrator.Transition, error)
	// Events returns the boot services' events after seq, waiting up to
	// wait for one (their long poll).
	Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error)
	// Console returns the end (at most max bytes) of a node's recorded
	// console; an error wrapping os.ErrNotExist when none was recorded.
	Console(hostname string, max int64) (*Console, error)
}

// ConsoleDir is where bootstrap and reprovision record each node's serial
// console, as STATE/console/HOSTNAME.log.
const ConsoleDir = "console"

// Local reads the management node's own state: the plan it serves, the
// status package's merge of the orchestrator's state folder and the boot
// services' view (exactly what `racker status` prints), the transition log
// and the recorded consoles.
type Local struct {
	StateDir string
	// Boot is the boot services' API (their HTTP address).
	Boot *api.Client
	// StatusTimeout bounds the boot services' answer to one status merge,
	// as racker status does (default 1 s); without it the recorded state shows.
	StatusTimeout time.Duration
	Logger        *slog.Logger
	plan          atomic.Pointer[plan.Plan]
}

// NewLocal returns the view's source for the state folder stateDir, the
// plan p and the boot services reached by boot.
func NewLocal(stateDir string, p *plan.Plan, boot *api.Client, log *slog.Logger) *Local {
	l := &Local{StateDir: stateDir, Boot: boot, Logger: log}
	l.plan.Store(p)
	return l
}

// SetPlan replaces the plan (racker serve re-reads nodes.csv on SIGHUP).
func (l *Local) SetPlan(p *plan.Plan) { l.plan.Store(p) }

// WithPlan wraps a plan reload (the boot services' Reload) so that the view
// takes the new plan once the boot services accepted it.
func (l *Local) WithPlan(reload func(*plan.Plan) error) func(*plan.Plan) error {
	return func(p *plan.Plan) error {
		if err := reload(p); err != nil {
			return err
		}
		l.SetPlan(p)
		return nil
	}
}

// Rack is status.Collect over the state folder, the plan and the boot services.
func (l *Local) Rack(ctx context.Context) (*plan.Plan, status.Status, error) {
	p := l.plan.Load()
	src := status.Sources{StateDir: l.StateDir, Plan: p, Logger: l.Logger}
	if l.Boot != nil {
		src.Boot = l.Boot
	}
	d := l.StatusTimeout
	if d <= 0 {
		d = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	st, err := status.Collect(ctx, src)
	return p, st, err
}

// Transitions reads the orchestrator's transition log.
func (l *Local) Transitions(context.Context) ([]orchestrator.Transition, error) {
	return orchestrator.ReadLog(l.StateDir)
}

// Events is the boot services' event long poll.
func (l *Local) Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error) {
	if l.Boot == nil {
		return nil, errors.New("no boot services to read events from")
	}
	return l.Boot.Events(ctx, after, wait)
}

// hostnameRE is what a console file may be named after: a plan's hostname,
// never a path.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$`)

// Console reads the tail of STATE/console/HOSTNAME.log.
func (l *Local) Console(hostname string, max int64) (*Console, error) {
	if !hostnameRE.MatchString(hostname) || strings.Contains(hostname, "..") {
		return nil, fmt.Errorf("reading the console of %q: not a hostname: %w", hostname, os.ErrNotExist)
	}
	return ReadConsoleTail(filepath.Join(l.StateDir, ConsoleDir, hostname+".log"), max)
}

// ReadConsoleTail reads the last max bytes of a console log, from the
// first whole line, cleaned for a page.
func ReadConsoleTail(path string, max int64) (*Console, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the console log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the console log: %w", err)
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, fmt.Errorf("reading the console log %s: %w", path, err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return &Console{File: path, Tail: CleanConsole(b), Size: fi.Size(), Updated: fi.ModTime().UTC()}, nil
}

// Terminal escape sequences a serial console carries (colours, cursor
// moves, character-set switches): CSI, OSC, and two-byte ESC sequences.
var escapeRE = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[()*+][0-9A-Za-z]|[@-Z\\-_=>])`)

// CleanConsole turns console bytes into text for a page: escape sequences
// and control characters other than newline and tab removed, carriage
// returns made line ends, invalid UTF-8 replaced.
func CleanConsole(b []byte) string {
	b = escapeRE.ReplaceAll(b, nil)
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var out strings.Builder
	out.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\r':
			out.WriteByte('\n')
		case r == '\n' || r == '\t':
			out.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		default:
			out.WriteRune(r)
		}
	}
	return out.String()
}
