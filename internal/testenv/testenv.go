// Package testenv lets tests state what they need (root, a command, a
// daemon). Outside CI a missing requirement skips the test with a clear
// message; in CI (CI=true) it fails it, so a skipped test never counts as
// passing there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI says whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test (or fails it in CI) because of what.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("requirement missing in CI: %s", what)
	}
	t.Skipf("skipped: %s (this test runs in CI)", what)
}

// RequireRoot needs the test to run as root (network namespaces, bridges).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// RequireCommand needs an executable on PATH and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" not on PATH (make deps installs it)")
	}
	return p
}

// RequireFile needs a file to exist (firmware, boot files) and returns its path.
func RequireFile(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path+" is missing (make test builds binaries and the test OS first; make deps installs packages)")
	}
	return path
}
