package initrd

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// TestArchiveReadsBackWithCpio checks the archive with the real cpio(1).
func TestArchiveReadsBackWithCpio(t *testing.T) {
	cpio := testenv.RequireCommand(t, "cpio")
	a := NewArchive()
	a.File("init", 0o755, []byte("#!/bin/sh\n"))
	a.File("usr/lib/odd", 0o644, []byte("12345")) // length not a multiple of 4
	a.Symlink("usr/bin/curl", "/init")
	a.CharDev("dev/console", 0o600, 5, 1)
	a.Dir("root", 0o700)
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	a.WriteTo(&again)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of the same archive differ (not reproducible)")
	}
	cmd := exec.Command(cpio, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	list := string(out)
	for _, want := range []string{"drwx------", "-rwxr-xr-x", " init\n", "crw-------", "5,   1", "dev/console", "usr/bin/curl -> /init", "usr/lib/odd"} {
		if !strings.Contains(list, want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, list)
		}
	}
	// Parents come first: "usr" before "usr/bin" before "usr/bin/curl".
	if i, j := strings.Index(list, " usr\n"), strings.Index(list, " usr/bin\n"); i < 0 || j < i {
		t.Errorf("parent folders missing or out of order:\n%s", list)
	}
}
