package consolelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bmc"
)

// Opener attaches to one node's console; what it returns ends when the
// console does (the BMC went away, another session took it over).
type Opener func(ctx context.Context) (io.ReadCloser, error)

// Recorder records consoles, one goroutine per node, until its context
// ends. The zero value plus StateDir works.
type Recorder struct {
	StateDir string
	// MaxBytes and Keep size each node's logs (defaults DefaultMaxBytes,
	// DefaultKeep).
	MaxBytes int64
	Keep     int
	// Retry is the wait before attaching again after a failure or a lost
	// console (default 5 s): the BMC may still be waiting for its lease,
	// or a person may be using the console (racker console --force).
	Retry  time.Duration
	Logger *slog.Logger
	Now    func() time.Time

	wg sync.WaitGroup
}

// Record starts recording the console of the node called name (its log is
// Path(StateDir, name)) until ctx ends. A BMC without a console (Redfish)
// is recorded as such once and left alone.
func (r *Recorder) Record(ctx context.Context, name string, open Opener) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.record(ctx, name, open); err != nil {
			r.logger().Warn("console not recorded", "node", name, "err", err)
		}
	}()
}

// Wait waits for every recording to stop (after their contexts ended).
func (r *Recorder) Wait() { r.wg.Wait() }

func (r *Recorder) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Recorder) record(ctx context.Context, name string, open Opener) error {
	keep := r.Keep
	if keep == 0 {
		keep = DefaultKeep
	}
	f, err := Open(Path(r.StateDir, name), r.MaxBytes, keep)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &lineWriter{w: f}
	retry := r.Retry
	if retry <= 0 {
		retry = 5 * time.Second
	}
	lastErr := ""
	for ctx.Err() == nil {
		con, err := open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, bmc.ErrNoConsole) {
				w.mark(fmt.Sprintf("no console to record: %v", err), r.now())
				return nil
			}
			// Said once per kind of failure: a BMC waiting for its lease
			// would otherwise fill the log with the same line.
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				w.mark(fmt.Sprintf("cannot attach to the console (retrying every %s): %v", retry, err), r.now())
				r.logger().Debug("console not attached", "node", name, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			continue
		}
		lastErr = ""
		w.mark("console attached", r.now())
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				con.Close()
			case <-done:
			}
		}()
		err = copyTo(w, con)
		close(done)
		con.Close()
		if ctx.Err() != nil {
			break
		}
		why := "the console ended"
		if err != nil {
			why = err.Error()
		}
		w.mark(fmt.Sprintf("console lost (%s); attaching again", why), r.now())
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
	w.mark("recording stopped", r.now())
	return nil
}

// lineWriter writes through to the log and remembers whether the last
// byte ended a line, so the recorder's own lines start on one.
type lineWriter struct {
	w       io.Writer
	midLine bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.midLine = p[n-1] != '\n'
	}
	return n, err
}

func (l *lineWriter) mark(text string, at time.Time) {
	prefix := ""
	if l.midLine {
		prefix = "\n"
	}
	fmt.Fprintf(l, "%s--- racker: %s %s\n", prefix, at.UTC().Format(time.RFC3339), text)
}
