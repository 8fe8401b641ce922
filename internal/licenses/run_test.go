package licenses

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What make licenses and make licenses-check do, on a fixture module: a
// dependency without a licence fails both and writes nothing; once it has
// one the file is written and checks clean; a new dependency makes it stale.
func TestRunWriteAndCheck(t *testing.T) {
	dir := fixture(t, nil)
	ctx := context.Background()
	opts := Options{Dir: dir, Go: goCmd(t), Scope: Scope{Binaries: map[string]string{"app": "./cmd/app"}}}
	const out = "licenses.md"
	var stdout bytes.Buffer

	for _, check := range []bool{false, true} {
		err := Run(ctx, opts, out, check, &stdout)
		if err == nil || !strings.Contains(err.Error(), "example.com/dep") || !strings.Contains(err.Error(), "no licence file") {
			t.Fatalf("Run(check=%v) with an unlicensed dependency: %v", check, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, out)); !os.IsNotExist(err) {
		t.Fatalf("a failed run wrote %s: %v", out, err)
	}

	os.WriteFile(filepath.Join(dir, "dep", "LICENSE"), []byte(MITText), 0o644)
	if err := Run(ctx, opts, out, true, &stdout); err == nil || !strings.Contains(err.Error(), "make licenses writes it") {
		t.Fatalf("check without the file: %v", err)
	}
	if err := Run(ctx, opts, out, false, &stdout); err != nil {
		t.Fatal(err)
	}
	if err := Run(ctx, opts, out, true, &stdout); err != nil {
		t.Fatalf("check right after writing: %v", err)
	}

	// A second dependency (a new go.mod line and an import) makes the file stale.
	os.MkdirAll(filepath.Join(dir, "dep2"), 0o755)
	os.WriteFile(filepath.Join(dir, "dep2", "go.mod"), []byte("module example.com/dep2\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "dep2", "dep2.go"), []byte("package dep2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "dep2", "LICENSE"), []byte(apacheText(t)), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/app\n\ngo 1.22\n\nrequire (\n\texample.com/dep v0.0.0\n\texample.com/dep2 v0.0.0\n)\n\nreplace example.com/dep => ./dep\n\nreplace example.com/dep2 => ./dep2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app_test.go"), []byte("package app\n\nimport _ \"example.com/dep2\"\n"), 0o644)
	err := Run(ctx, opts, out, true, &stdout)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("check after adding a dependency: %v, want ErrStale", err)
	}
	if err := Run(ctx, opts, out, false, &stdout); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(filepath.Join(dir, out))
	if !strings.Contains(string(doc), "| `example.com/dep2` | v0.0.0 (replaced by ./dep2) | Apache-2.0 | tests |") {
		t.Errorf("a dependency only a test imports is listed as tests:\n%s", doc)
	}
}
