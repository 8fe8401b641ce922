package cli

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/racker/racker/internal/testenv"
)

// racker release docs writes a man page for every command users see (with
// its examples) and completion scripts that the shells accept.
func TestReleaseDocsWritesManPagesAndCompletions(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	if code, _, errs := run(t, "", "release", "docs", "--out", dir); code != 0 {
		t.Fatalf("release docs: exit %d: %s", code, errs)
	}
	man := filepath.Join(dir, "share", "man", "man1")
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		page := filepath.Join(man, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		b, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("no man page for %s: %v", c.CommandPath(), err)
		} else if !strings.Contains(string(b), ".SH EXAMPLE") || !strings.Contains(string(b), `"Jan 2026"`) {
			t.Errorf("%s lacks its examples or its reproducible date", page)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if _, err := os.Stat(filepath.Join(man, "racker-release.1")); !os.IsNotExist(err) {
		t.Error("the hidden release commands got a man page")
	}
	bash := filepath.Join(dir, "share", "bash-completion", "completions", "racker")
	for _, f := range []string{bash, filepath.Join(dir, "share", "zsh", "site-functions", "_racker"),
		filepath.Join(dir, "share", "fish", "vendor_completions.d", "racker.fish")} {
		if st, err := os.Stat(f); err != nil || st.Size() < 1000 {
			t.Errorf("completion script %s: %v", f, err)
		}
	}
	sh := testenv.RequireCommand(t, "bash")
	if out, err := exec.Command(sh, "-n", bash).CombinedOutput(); err != nil {
		t.Errorf("bash rejects the completion script: %v\n%s", err, out)
	}
}
