package elfdeps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// The host's own bash (Debian's) is the program under test: its closure
// must hold the loader and libc under their merged-/usr names.
func TestClosureOfHostBash(t *testing.T) {
	testenv.RequireFile(t, "/usr/bin/bash")
	files, err := Resolver{}.Closure("/usr/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.Target] = f.Source
		if st, err := os.Lstat(f.Source); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: source %s is not a regular file", f.Target, f.Source)
		}
	}
	for _, want := range []string{"/usr/bin/bash", "/usr/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libtinfo.so.6"} {
		if _, ok := got[want]; !ok {
			t.Errorf("closure lacks %s: %v", want, got)
		}
	}
}

// A static program needs nothing; a missing library names who needs it.
func TestStaticAndMissing(t *testing.T) {
	testenv.RequireFile(t, "/bin/busybox")
	files, err := Resolver{}.Closure("/bin/busybox")
	if err != nil || len(files) != 1 {
		t.Errorf("static busybox: %v %v", files, err)
	}
	// A root with a copy of bash but an empty library search path.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	b, err := os.ReadFile("/usr/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "usr/bin/bash"), b, 0o755)
	_, err = Resolver{Roots: []string{root}, LibDirs: []string{"/nowhere"}}.Closure("/usr/bin/bash")
	if err == nil || !strings.Contains(err.Error(), "/usr/bin/bash needs") {
		t.Errorf("missing library: %v", err)
	}
	if _, err := (Resolver{}).Closure("/usr/bin/no-such-program"); err == nil {
		t.Error("a missing program was accepted")
	}
}

// Roots are tried in order, and absolute symlinks inside a root stay in it.
func TestRootsAndSymlinks(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/real"), []byte("x"), 0o644)
	os.Symlink("/usr/lib/real", filepath.Join(root, "usr/lib/link"))
	os.Symlink("usr/lib", filepath.Join(root, "lib"))
	src, err := Resolver{Roots: []string{root, "/"}}.find("/lib/link")
	if err != nil || src != filepath.Join(root, "usr/lib/real") {
		t.Errorf("find = %q, %v", src, err)
	}
}
