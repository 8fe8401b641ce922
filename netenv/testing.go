package netenv

import (
	"log/slog"
	"path/filepath"
	"testing"
)

// ForTest builds t's topology for a test and tears it down in t.Cleanup,
// also when the test fails. The record lives in the test's temp folder.
// Callers check root first (internal/testenv.RequireRoot).
func ForTest(tb testing.TB, t Topology) *Env {
	tb.Helper()
	rec := filepath.Join(tb.TempDir(), "netenv.json")
	e, err := Create(t, rec, slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		tb.Fatalf("netenv: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Teardown(); err != nil {
			tb.Errorf("netenv teardown: %v", err)
		}
	})
	return e
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}
