package testos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// consoleHandler prints records as "testos: message key=value" lines: the
// serial console is what people (and tests) read, so every line says who
// speaks and nothing else (no timestamps, no levels except warnings).
type consoleHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	attrs []slog.Attr
}

// NewConsoleLogger returns a logger that writes "testos: …" lines to w.
func NewConsoleLogger(w io.Writer) *slog.Logger {
	return slog.New(&consoleHandler{mu: &sync.Mutex{}, w: w})
}

func (h *consoleHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *consoleHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("testos: ")
	if r.Level >= slog.LevelWarn {
		b.WriteString(r.Level.String() + ": ")
	}
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteString("\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *consoleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &consoleHandler{mu: h.mu, w: h.w, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

func (h *consoleHandler) WithGroup(string) slog.Handler { return h }

// sayer adapts a logger to the one-string callbacks of the pure parts.
func sayer(log *slog.Logger) func(string) {
	return func(s string) { log.Info(s) }
}
