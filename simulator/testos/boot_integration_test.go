package testos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

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
