package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The boot services serve iPXE from Racker's own payload, never from the
// host's packages: --tftp-root wins, else INSTALL-DIR/current/share/ipxe
// (this test binary is not part of a payload), and a missing folder is an
// error that says how to get one.
func TestIPXEDirComesFromRackersPayload(t *testing.T) {
	install := t.TempDir()
	var logs bytes.Buffer
	env := &Env{InstallDir: install, Stdout: io.Discard, Stderr: &logs}

	_, err := env.ipxeDir("")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(install, "current/share/ipxe")) || !strings.Contains(err.Error(), "installer image") {
		t.Fatalf("no payload installed: %v", err)
	}
	if _, err := env.ipxeDir(filepath.Join(install, "nowhere")); err == nil || !strings.Contains(err.Error(), "--tftp-root") {
		t.Fatalf("a missing --tftp-root: %v", err)
	}

	share := filepath.Join(install, "versions/1.0.0/share/ipxe")
	os.MkdirAll(share, 0o755)
	os.WriteFile(filepath.Join(share, "undionly.kpxe"), []byte("x"), 0o644)
	os.Symlink("versions/1.0.0", filepath.Join(install, "current"))
	dir, err := env.ipxeDir("")
	if err != nil || dir != filepath.Join(install, "current/share/ipxe") {
		t.Fatalf("installed payload: %q, %v", dir, err)
	}
	if !strings.Contains(logs.String(), "ipxe.efi") {
		t.Errorf("no warning about the missing ipxe.efi: %s", logs.String())
	}
	other := t.TempDir()
	if dir, err := env.ipxeDir(other); err != nil || dir != other {
		t.Fatalf("--tftp-root: %q, %v", dir, err)
	}
}
