package testos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The integration test plays Racker's side of docs/boot-contract.md by hand
// (it must not import provisioner/: each side is tested against the other's
// reading of the contract). QEMU's user-mode network lets the guest reach the
// test's HTTP server on the host's loopback as 10.0.2.2, so no traffic leaves
// the machine.

const (
	nodeMAC      = "52:54:00:7e:57:01"
	nodeHostname = "testnode-1"
	sshKey       = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7e57o5testostestostestostestostestos racker@test"
	guestHost    = "10.0.2.2"
	// staticAddr is the boot config's static internal address (DHCP=no);
	// QEMU's DHCP leases 10.0.2.15, so the console shows the lease was
	// dropped and the file applied, and the callbacks still get through.
	staticAddr = "10.0.2.20/24"
)

// request is what the fake boot services saw.
type request struct {
	At     time.Time
	Method string
	URI    string
	Body   string
	CType  string
}

type bootServices struct {
	t       *testing.T
	release string
	port    int
	served  string // the release's version (its version.txt), served at /assets/testos/VERSION/
	version string // the version the install script asks flatcar-install for

	mu           sync.Mutex
	requests     []request
	events       chan event
	rejectBooted int // answer this many booted callbacks 503 (Racker away)
}

type event struct {
	At      time.Time
	MAC     string `json:"mac"`
	Event   string `json:"event"`
	Message string `json:"message"`
}

func (s *bootServices) base() string { return fmt.Sprintf("http://%s:%d", guestHost, s.port) }

func (s *bootServices) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	s.mu.Lock()
	s.requests = append(s.requests, request{At: time.Now(), Method: r.Method, URI: r.URL.RequestURI(), Body: string(body), CType: r.Header.Get("Content-Type")})
	s.mu.Unlock()
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/assets/testos/"+s.served+"/"):
		http.ServeFile(w, r, filepath.Join(s.release, filepath.Base(r.URL.Path)))
	case r.Method == http.MethodGet && r.URL.Path == "/ignition":
		if r.URL.Query().Get("mac") != nodeMAC {
			http.Error(w, "unknown node", http.StatusNotFound)
			return
		}
		switch r.URL.Query().Get("phase") {
		case "install":
			writeJSON(w, s.installConfig())
		case "boot":
			writeJSON(w, s.bootConfig())
		default:
			http.Error(w, "unknown phase", http.StatusBadRequest)
		}
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/events":
		var e event
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Event == "" {
			http.Error(w, "malformed event", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		reject := e.Event == "booted" && s.rejectBooted > 0
		if reject {
			s.rejectBooted--
		}
		s.mu.Unlock()
		if reject {
			http.Error(w, "racker is restarting", http.StatusServiceUnavailable)
			return
		}
		e.At = time.Now()
		s.events <- e
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func dataURL(s string) string {
	return "data:," + strings.NewReplacer("%", "%25", "\n", "%0A", " ", "%20", "\"", "%22", "#", "%23", "?", "%3F", "&", "%26").Replace(s)
}

// installScript follows docs/boot-contract.md §3: installing, wipe the other
// disk, flatcar-install with the release's signing key, installed, reboot;
// failed on any failure. It lets flatcar-install pick the disk (-s), so
// the real script's own rule (the smallest disk over 10 GB, found with
// lsblk on a system without udev) is what chooses.
func (s *bootServices) installScript() string {
	return `#!/bin/sh
MAC=` + nodeMAC + `
API=` + s.base() + `/api/v1/events
report() {
  curl -fsS -X POST -H "Content-Type: application/json" --data-binary "{\"mac\":\"$MAC\",\"event\":\"$1\",\"message\":\"$2\"}" "$API"
}
fail() { report failed "$1"; exit 1; }
report installing "" || exit 1
wipefs -a /dev/vda || fail "wipefs /dev/vda failed"
# What flatcar-install relies on, on a system without a udev daemon.
udevadm settle && echo "check: udevadm settle exit 0"
lsblk -lnpdb -x SIZE -o NAME,SIZE,TYPE | sed 's/^/check: lsblk /'
flatcar-install -s -i /opt/racker/boot.ign -b ` + s.base() + `/assets/testos -V ` + s.version + ` -k /opt/racker/image-signing-key.asc || fail "flatcar-install failed"
report installed "" || exit 1
systemctl reboot
`
}

func (s *bootServices) installConfig() map[string]any {
	stub := fmt.Sprintf(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"%s/ignition?mac=%s&phase=boot"}}}}`, s.base(), nodeMAC)
	key, err := os.ReadFile(filepath.Join(s.release, "image-signing-key.asc"))
	if err != nil {
		s.t.Errorf("the release has no signing key: %v", err)
	}
	return map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"storage": map[string]any{"files": []any{
			map[string]any{"path": "/opt/racker/install.sh", "mode": 0o755, "contents": map[string]any{"source": dataURL(s.installScript())}},
			map[string]any{"path": "/opt/racker/boot.ign", "mode": 0o644, "contents": map[string]any{"source": dataURL(stub)}},
			map[string]any{"path": "/opt/racker/image-signing-key.asc", "mode": 0o644, "contents": map[string]any{"source": dataURL(string(key))}},
		}},
		"systemd": map[string]any{"units": []any{
			map[string]any{"name": "racker-install.service", "enabled": true, "contents": "[Unit]\nDescription=Racker install\n[Service]\nType=oneshot\nExecStart=/opt/racker/install.sh\n[Install]\nWantedBy=multi-user.target\n"},
		}},
	}
}

func (s *bootServices) bootConfig() map[string]any {
	booted := fmt.Sprintf(`/usr/bin/curl -fsS -X POST -H "Content-Type: application/json" --data-binary '{"mac":"%s","event":"booted"}' %s/api/v1/events`, nodeMAC, s.base())
	return map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"storage": map[string]any{"files": []any{
			map[string]any{"path": "/etc/hostname", "mode": 0o644, "contents": map[string]any{"source": dataURL(nodeHostname + "\n")}},
			map[string]any{"path": "/etc/systemd/network/00-internal.network", "mode": 0o644, "contents": map[string]any{"source": dataURL("[Match]\nMACAddress=" + nodeMAC + "\n[Network]\nDHCP=no\nAddress=" + staticAddr + "\n")}},
			map[string]any{"path": "/etc/racker/labels", "mode": 0o644, "contents": map[string]any{"source": "data:;base64,cm9sZT13b3JrZXIKbm9kZS10eXBlPWRlZmF1bHQK"}},
		}},
		"passwd": map[string]any{"users": []any{map[string]any{"name": "core", "sshAuthorizedKeys": []string{sshKey}}}},
		"systemd": map[string]any{"units": []any{
			map[string]any{"name": "show-applied.service", "enabled": true, "contents": "[Service]\nType=oneshot\nExecStart=/bin/cat /etc/racker/labels /home/core/.ssh/authorized_keys\nExecStartPost=/usr/sbin/ip -4 -o addr show dev eth0\n[Install]\nWantedBy=multi-user.target\n"},
			map[string]any{"name": "racker-booted.service", "enabled": true, "contents": "[Unit]\nDescription=Tell Racker\n[Service]\nType=oneshot\nExecStart=" + booted + "\nRestart=on-failure\nRestartSec=1\n[Install]\nWantedBy=multi-user.target\n"},
		}},
	}
}

func (s *bootServices) requestsSince(t0 time.Time) []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []request
	for _, r := range s.requests {
		if !r.At.Before(t0) {
			out = append(out, r)
		}
	}
	return out
}

func (s *bootServices) waitEvent(t *testing.T, ctx context.Context, v *vm, want string) time.Duration {
	t.Helper()
	for {
		select {
		case e := <-s.events:
			if e.MAC != nodeMAC {
				t.Fatalf("event %q for MAC %q, want %q", e.Event, e.MAC, nodeMAC)
			}
			if e.Event == "failed" {
				t.Fatalf("%s: the node reported failed: %s", v.name, e.Message)
			}
			if e.Event == want {
				return e.At.Sub(v.start)
			}
			t.Fatalf("%s: event %q while waiting for %q", v.name, e.Event, want)
		case <-ctx.Done():
			t.Fatalf("%s: no %q event", v.name, want)
		}
	}
}

// startBootServices serves the release at its version; the install script
// asks for version ("" for the release's own).
func startBootServices(t *testing.T, release, version string) *bootServices {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(release, "version.txt"))
	if err != nil {
		t.Fatalf("the release has no version.txt (make testos): %v", err)
	}
	served := ""
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "FLATCAR_VERSION="); ok {
			served = v
		}
	}
	if version == "" {
		version = served
	}
	srv := &bootServices{t: t, release: release, served: served, version: version, events: make(chan event, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.port = ln.Addr().(*net.TCPAddr).Port
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return srv
}
