package testos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
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
	// staticAddr is the boot config's static internal address; QEMU's DHCP
	// leases 10.0.2.15, so the console shows the file was applied.
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
	version string // the release flatcar-install asks for ("current")

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
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/assets/testos/current/"):
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
// disks, flatcar-install, installed, reboot; failed on any failure.
func (s *bootServices) installScript() string {
	return `#!/bin/sh
MAC=` + nodeMAC + `
API=` + s.base() + `/api/v1/events
report() {
  curl -fsS -X POST -H "Content-Type: application/json" --data-binary "{\"mac\":\"$MAC\",\"event\":\"$1\",\"message\":\"$2\"}" "$API"
}
fail() { report failed "$1"; exit 1; }
report installing "" || exit 1
for d in /sys/block/sd* /sys/block/vd* /sys/block/nvme*n*; do
  [ -e "$d" ] || continue
  [ "${d##*/}" = vda ] && continue
  wipefs -a "/dev/${d##*/}" || fail "wipefs /dev/${d##*/} failed"
done
ls /sys/block
flatcar-install -d /dev/vda -i /opt/racker/boot.ign -b ` + s.base() + `/assets/testos -V ` + s.version + ` || fail "flatcar-install failed"
report installed "" || exit 1
systemctl reboot
`
}

func (s *bootServices) installConfig() map[string]any {
	stub := fmt.Sprintf(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"%s/ignition?mac=%s&phase=boot"}}}}`, s.base(), nodeMAC)
	return map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"storage": map[string]any{"files": []any{
			map[string]any{"path": "/opt/racker/install.sh", "mode": 0o755, "contents": map[string]any{"source": dataURL(s.installScript())}},
			map[string]any{"path": "/opt/racker/boot.ign", "mode": 0o644, "contents": map[string]any{"source": dataURL(stub)}},
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
			map[string]any{"name": "show-applied.service", "enabled": true, "contents": "[Service]\nType=oneshot\nExecStart=/bin/cat /etc/racker/labels /home/core/.ssh/authorized_keys\nExecStartPost=/usr/sbin/ip -4 -o addr show dev eth0\n"},
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

// vm is one QEMU run with its serial console captured.
type vm struct {
	name    string
	cmd     *exec.Cmd
	start   time.Time
	mu      sync.Mutex
	console bytes.Buffer
	lines   chan string
	exited  chan struct{} // closed when QEMU has exited
	err     error         // QEMU's exit status, once exited is closed
}

func startVM(t *testing.T, name string, args ...string) *vm {
	t.Helper()
	qemu := testenv.RequireCommand(t, "qemu-system-x86_64")
	base := []string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"}
	cmd := exec.Command(qemu, append(base, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	// QEMU dies with the test binary even if the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v := &vm{name: name, cmd: cmd, lines: make(chan string, 4096), exited: make(chan struct{})}
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("while starting QEMU for %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-v.exited
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, v.output())
		}
	})
	go func() {
		buf := make([]byte, 4096)
		var line []byte
		for {
			n, err := out.Read(buf)
			v.mu.Lock()
			v.console.Write(buf[:n])
			v.mu.Unlock()
			for _, b := range buf[:n] {
				if b == '\n' {
					select {
					case v.lines <- strings.TrimRight(string(line), "\r"):
					default:
					}
					line = line[:0]
				} else {
					line = append(line, b)
				}
			}
			if err != nil {
				break
			}
		}
		v.err = cmd.Wait()
		close(v.exited)
		close(v.lines)
	}()
	return v
}

func (v *vm) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// waitLine waits for a console line containing want and answers when it came.
func (v *vm) waitLine(t *testing.T, ctx context.Context, want string) time.Duration {
	t.Helper()
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				t.Fatalf("%s: QEMU exited before the console showed %q", v.name, want)
			}
			if strings.Contains(l, want) {
				return time.Since(v.start)
			}
		case <-ctx.Done():
			t.Fatalf("%s: the console never showed %q", v.name, want)
		}
	}
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

func fillFile(t *testing.T, path string, size int64, b byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{b}, 1<<20)
	if _, err := f.WriteAt(chunk, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(chunk, size-int64(len(chunk))); err != nil {
		t.Fatal(err)
	}
}

func figure(t *testing.T, what string, d time.Duration) {
	t.Logf("figure: %-42s %6.1f s", what, d.Seconds())
}

func TestInstallAndBootUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs under TCG (minutes); skipped with -short")
	}
	for _, c := range []string{"qemu-system-x86_64", "qemu-img", "apt-get", "mkfs.vfat", "mcopy", "syslinux", "sfdisk", "bzip2"} {
		testenv.RequireCommand(t, c)
	}
	ovmfCode := testenv.RequireFile(t, "/usr/share/OVMF/OVMF_CODE_4M.fd")
	ovmfVars := testenv.RequireFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd")
	release := buildRelease(t)
	srv := startBootServices(t, release, "current")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	disk, other := filepath.Join(dir, "vda.img"), filepath.Join(dir, "vdb.img")
	fillFile(t, disk, 256<<20, 0)
	fillFile(t, other, 128<<20, 0xaa) // an "old OS" the wipe-all step must erase
	nic := "virtio-net-pci,netdev=n0,mac=" + nodeMAC + ",romfile="

	// 1. Netboot (the kernel and initrd iPXE would load) and install.
	t0 := time.Now()
	install := startVM(t, "install",
		"-kernel", filepath.Join(release, "flatcar_production_pxe.vmlinuz"),
		"-initrd", filepath.Join(release, "flatcar_production_pxe_image.cpio.gz"),
		"-append", fmt.Sprintf("flatcar.first_boot=yes ignition.config.url=%s/ignition?mac=%s&phase=install console=ttyS0,115200n8 quiet", srv.base(), nodeMAC),
		"-netdev", "user,id=n0", "-device", nic,
		"-drive", "file="+disk+",format=raw,if=virtio", "-drive", "file="+other+",format=raw,if=virtio")
	figure(t, "install: kernel to /init", install.waitLine(t, ctx, "testos: starting"))
	figure(t, "install: DHCP lease", install.waitLine(t, ctx, "testos: DHCP lease iface=eth0 mac="+nodeMAC))
	figure(t, "install: 'installing' callback", srv.waitEvent(t, ctx, install, "installing"))
	figure(t, "install: 'installed' callback", srv.waitEvent(t, ctx, install, "installed"))
	select {
	case <-install.exited:
		figure(t, "install: reboot (QEMU exits, -no-reboot)", time.Since(install.start))
		if install.err != nil {
			t.Fatalf("QEMU after the install: %v", install.err)
		}
	case <-ctx.Done():
		t.Fatal("the node did not reboot after the install")
	}
	con := install.output()
	for _, want := range []string{
		"testos: wrote /opt/racker/install.sh (mode 0755)",
		"testos: starting unit racker-install.service",
		"wipefs: /dev/vdb: zeroed the first and last MiB",
		"testos: flatcar-install: stored /opt/racker/boot.ign as /ignition/config.ign on /dev/vda",
		"testos: systemctl reboot: syncing disks",
	} {
		if !strings.Contains(con, want) {
			t.Errorf("install console lacks %q", want)
		}
	}
	assertRequests(t, srv.requestsSince(t0), []string{
		"GET /ignition?mac=" + nodeMAC + "&phase=install",
		"POST /api/v1/events installing",
		"GET /assets/testos/current/flatcar_production_image.bin.bz2",
		"POST /api/v1/events installed",
	})
	assertWiped(t, other)
	assertBootable(t, disk)

	// 2. Boot the installed disk on SeaBIOS and on OVMF (each on its own
	// copy-on-write overlay, so both see the disk as the install left it).
	firmwares := []struct {
		name string
		args func(dir string) []string
	}{
		{"seabios", func(string) []string { return nil }},
		{"ovmf", func(dir string) []string {
			vars := filepath.Join(dir, "OVMF_VARS.fd")
			copyFile(t, ovmfVars, vars)
			return []string{"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode, "-drive", "if=pflash,format=raw,file=" + vars}
		}},
	}
	for _, fw := range firmwares {
		overlay := filepath.Join(dir, fw.name+".qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", disk, "-F", "raw", overlay).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
		t1 := time.Now()
		srv.mu.Lock()
		srv.rejectBooted = 1 // the first callback fails: Restart=on-failure must retry it
		srv.mu.Unlock()
		args := append(fw.args(dir),
			"-netdev", "user,id=n0", "-device", nic,
			"-drive", "file="+overlay+",format=qcow2,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=0")
		boot := startVM(t, fw.name, args...)
		figure(t, fw.name+": firmware+syslinux+kernel to /init", boot.waitLine(t, ctx, "testos: starting"))
		boot.waitLine(t, ctx, "testos: Ignition config from the disk device=/dev/vda1")
		figure(t, fw.name+": hostname from the boot config", boot.waitLine(t, ctx, "testos: hostname set from /etc/hostname hostname="+nodeHostname))
		figure(t, fw.name+": 'booted' callback", srv.waitEvent(t, ctx, boot, "booted"))
		boot.waitLine(t, ctx, "testos: ready")
		boot.waitLine(t, ctx, "testos: unit racker-booted.service finished (start 2)")
		con := boot.output()
		for _, want := range []string{"system=installed", "role=worker", sshKey, "testos: user core: 1 SSH key(s)",
			"testos: network file applied file=00-internal.network iface=eth0", "inet " + staticAddr,
			"testos: unit racker-booted.service failed, restarting it every 1s"} {
			if !strings.Contains(con, want) {
				t.Errorf("%s console lacks %q", fw.name, want)
			}
		}
		reqs := srv.requestsSince(t1)
		assertRequests(t, reqs, []string{
			"GET /ignition?mac=" + nodeMAC + "&phase=boot",
			"POST /api/v1/events booted", // answered 503
			"POST /api/v1/events booted",
		})
		for _, r := range reqs {
			if strings.Contains(r.URI, "phase=install") || strings.Contains(r.URI, "/assets/") {
				t.Errorf("%s: the installed node asked for %s %s", fw.name, r.Method, r.URI)
			}
		}
		_ = boot.cmd.Process.Kill()
	}
}

func startBootServices(t *testing.T, release, version string) *bootServices {
	t.Helper()
	srv := &bootServices{t: t, release: release, version: version, events: make(chan event, 16)}
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

// TestInstallFailureReportsFailed: when flatcar-install fails (here the
// release does not exist), install.sh reports failed with its message, and
// the node stays up for inspection instead of rebooting.
func TestInstallFailureReportsFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG; skipped with -short")
	}
	testenv.RequireCommand(t, "qemu-system-x86_64")
	release := buildRelease(t)
	srv := startBootServices(t, release, "no-such-version")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	disk := filepath.Join(t.TempDir(), "vda.img")
	fillFile(t, disk, 64<<20, 0)
	v := startVM(t, "install-fail",
		"-kernel", filepath.Join(release, "flatcar_production_pxe.vmlinuz"),
		"-initrd", filepath.Join(release, "flatcar_production_pxe_image.cpio.gz"),
		"-append", fmt.Sprintf("ignition.config.url=%s/ignition?mac=%s&phase=install console=ttyS0,115200n8 quiet", srv.base(), nodeMAC),
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac="+nodeMAC+",romfile=",
		"-drive", "file="+disk+",format=raw,if=virtio")
	srv.waitEvent(t, ctx, v, "installing")
	select {
	case e := <-srv.events:
		if e.Event != "failed" || e.Message != "flatcar-install failed" {
			t.Fatalf("event %q %q, want failed with the script's message", e.Event, e.Message)
		}
	case <-ctx.Done():
		t.Fatal("no failed event")
	}
	v.waitLine(t, ctx, "testos: unit racker-install.service failed")
	v.waitLine(t, ctx, "testos: ready")
	select {
	case <-v.exited:
		t.Fatal("the node rebooted or stopped after a failed install; it must stay up")
	default:
	}
	if !strings.Contains(v.output(), "HTTP 404") {
		t.Error("the console does not say why flatcar-install failed")
	}
}

// assertRequests checks that the server saw want in this order (as
// "METHOD URI" or "POST /api/v1/events EVENT"); other requests may interleave.
func assertRequests(t *testing.T, got []request, want []string) {
	t.Helper()
	var seen []string
	for _, r := range got {
		s := r.Method + " " + r.URI
		if r.Method == http.MethodPost && r.URI == "/api/v1/events" {
			var e event
			_ = json.Unmarshal([]byte(r.Body), &e)
			if r.CType != "application/json" {
				t.Errorf("event %q sent with Content-Type %q", e.Event, r.CType)
			}
			s += " " + e.Event
		}
		seen = append(seen, s)
	}
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("requests: missing %q (in order) among:\n%s", want[i], strings.Join(seen, "\n"))
	}
}

func assertWiped(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{0, len(b) - 1<<20} {
		if !bytes.Equal(b[off:off+1<<20], make([]byte, 1<<20)) {
			t.Errorf("%s: the MiB at %d was not wiped", path, off)
		}
	}
}

func assertBootable(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := io.ReadFull(f, mbr); err != nil {
		t.Fatal(err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[446] != 0x80 || mbr[446+4] != 0xef {
		t.Errorf("%s: no bootable type-ef partition in the MBR after the install: % x", path, mbr[446:462])
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildRelease runs the build script (quick when nothing changed) and
// answers the release folder. RACKER_TESTOS_DIR points at a prebuilt one.
func buildRelease(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RACKER_TESTOS_DIR"); d != "" {
		return filepath.Join(d, "current")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cmd := exec.Command(filepath.Join(root, "scripts/build-testos.sh"), filepath.Join(root, "bin/testos"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-testos.sh: %v\n%s", err, out)
	}
	t.Logf("build-testos.sh (%.1f s): %s", time.Since(t0).Seconds(), strings.TrimSpace(string(out)))
	return filepath.Join(root, "bin/testos/current")
}
