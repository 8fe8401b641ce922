package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/ui"
)

// racker ui token makes the token once (mode 0600) and prints it; --new
// replaces it.
func TestUIToken(t *testing.T) {
	_, state := exampleRack(t)
	code, out1, errs := run(t, "", "ui", "token", "--state-dir", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, out2, _ := run(t, "", "ui", "token", "--state-dir", state)
	_, out3, _ := run(t, "", "ui", "token", "--new", "--state-dir", state)
	if tok := strings.TrimSpace(out1); len(tok) < 40 || out2 != out1 || out3 == out1 {
		t.Errorf("tokens %q %q %q: want one made once, kept, then replaced", out1, out2, out3)
	}
	fi, err := os.Stat(filepath.Join(state, ui.TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", fi, err)
	}
}

// racker serve refuses a rack view on the PXE network, or on every
// interface, before it touches the network.
func TestServeRefusesUIOnThePXENetwork(t *testing.T) {
	oem, state := exampleRack(t)
	for addr, want := range map[string]string{
		"172.24.213.1:8088": "is on the internal PXE network 172.24.213.0/24 (interface lo)",
		"0.0.0.0:8088":      "listens on every interface",
		"rack.example:8088": "not an IP address",
	} {
		code, _, errs := run(t, "", append(rackFlags(oem, state), "serve", "--pxe-interface", "lo", "--ui", addr)...)
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("serve --ui %s: exit %d, stderr %q; want an error saying %q", addr, code, errs, want)
		}
	}
}
