package testos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// TestInstallAndBootUnderQEMU plays a node's life against the fake boot
// services: netboot and install with Flatcar's own flatcar-install (which
// picks the 12 GiB disk over the 4 GiB one holding an old OS that the
// script wipes), the first boot from disk on SeaBIOS (Ignition from OEM's
// config.ign, the first-boot stamp removed, DHCP dropped for DHCP=no) on
// OVMF, which passes over the wiped disk to the installed one, and a later
// boot on SeaBIOS that runs no Ignition and sends no DHCP request at all,
// yet comes up with its hostname, static address and enabled units.
func TestInstallAndBootUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs under TCG (minutes); skipped with -short")
	}
	for _, c := range []string{"qemu-system-x86_64", "qemu-img"} {
		testenv.RequireCommand(t, c)
	}
	ovmfCode := testenv.RequireFile(t, "/usr/share/OVMF/OVMF_CODE_4M.fd")
	ovmfVars := testenv.RequireFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd")
	release := buildRelease(t)
	srv := startBootServices(t, release, "")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	old, disk := filepath.Join(dir, "vda.img"), filepath.Join(dir, "vdb.img")
	// vda: 4 GiB holding an old install (under flatcar-install -s's 10 GB);
	// vdb: 12 GiB, blank. Both sparse.
	writeOldOS(t, old, 4<<30, filepath.Join(release, "flatcar_production_image.bin.bz2"))
	fillFile(t, disk, 12<<30, 0)
	nic := "virtio-net-pci,netdev=n0,mac=" + nodeMAC + ",romfile="

	// 1. Netboot (the kernel and initrd iPXE would load) and install.
	t0 := time.Now()
	install := startVM(t, "install",
		"-kernel", filepath.Join(release, "flatcar_production_pxe.vmlinuz"),
		"-initrd", filepath.Join(release, "flatcar_production_pxe_image.cpio.gz"),
		"-append", fmt.Sprintf("flatcar.first_boot=yes ignition.config.url=%s/ignition?mac=%s&phase=install console=ttyS0,115200n8 quiet", srv.base(), nodeMAC),
		"-netdev", "user,id=n0", "-device", nic,
		"-drive", "file="+old+",format=raw,if=virtio", "-drive", "file="+disk+",format=raw,if=virtio")
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
	wants := []string{
		"testos: wrote /opt/racker/install.sh (mode 0755)",
		"testos: starting unit racker-install.service",
		"is installed on /dev/vdb",
		// udevadm settle and lsblk work without a udev daemon.
		"check: udevadm settle exit 0", "check: lsblk /dev/vda  4294967296 disk", "check: lsblk /dev/vdb 12884901888 disk",
		"testos: systemctl reboot: syncing disks",
	}
	if realInstaller(t) {
		wants = append(wants, "testos: flatcar-install: running Flatcar's own flatcar-install",
			"Installing Ignition config /opt/racker/boot.ign...", "Success! Flatcar Container Linux stable "+srv.served+" is installed on /dev/vdb")
	}
	for _, want := range wants {
		if !strings.Contains(con, want) {
			t.Errorf("install console lacks %q", want)
		}
	}
	assertRequests(t, srv.requestsSince(t0), []string{
		"GET /ignition?mac=" + nodeMAC + "&phase=install",
		"POST /api/v1/events installing",
		"GET /assets/testos/" + srv.served + "/flatcar_production_image.bin.bz2.sig",
		"GET /assets/testos/" + srv.served + "/flatcar_production_image.bin.bz2",
		"POST /api/v1/events installed",
	})
	assertWiped(t, old)
	assertBootable(t, disk)

	// 2. The first boot from disk, on OVMF: the wiped vda comes first in
	// the boot order and UEFI passes over it (a legacy BIOS would not: it
	// boots the first hard disk or nothing).
	first := filepath.Join(dir, "first.qcow2")
	overlay(t, disk, "raw", first)
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	copyFile(t, ovmfVars, vars)
	t1 := time.Now()
	srv.mu.Lock()
	srv.rejectBooted = 1 // the first callback fails: Restart=on-failure must retry it
	srv.mu.Unlock()
	boot1 := startVM(t, "first-boot", "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode, "-drive", "if=pflash,format=raw,file="+vars,
		"-netdev", "user,id=n0", "-device", nic,
		"-object", "filter-dump,id=f0,netdev=n0,file="+filepath.Join(dir, "first.pcap"),
		"-drive", "file="+old+",format=raw,if=none,id=d0,readonly=on", "-device", "virtio-blk-pci,drive=d0,bootindex=0",
		"-drive", "file="+first+",format=qcow2,if=none,id=d1", "-device", "virtio-blk-pci,drive=d1,bootindex=1")
	figure(t, "first boot (OVMF): firmware+syslinux+kernel to /init", boot1.waitLine(t, ctx, "testos: starting"))
	boot1.waitLine(t, ctx, "testos: first boot: Ignition config from the OEM partition device=/dev/vdb6")
	figure(t, "first boot: hostname from the boot config", boot1.waitLine(t, ctx, "testos: hostname set from /etc/hostname hostname="+nodeHostname))
	figure(t, "first boot: 'booted' callback", srv.waitEvent(t, ctx, boot1, "booted"))
	boot1.waitLine(t, ctx, "testos: ready")
	boot1.waitLine(t, ctx, "testos: unit racker-booted.service finished (start 2)")
	con = boot1.output()
	for _, want := range []string{"system=installed", "first_boot=true", "role=worker", sshKey, "testos: user core: 1 SSH key(s)",
		"testos: Ignition done; removed the first-boot stamp",
		"testos: network file applied file=00-internal.network iface=eth0 addresses=[" + staticAddr + "] dhcp=no dhcp_lease_dropped=true",
		"inet " + staticAddr, "testos: unit racker-booted.service failed, restarting it every 1s"} {
		if !strings.Contains(con, want) {
			t.Errorf("first boot console lacks %q", want)
		}
	}
	if strings.Contains(con, "inet 10.0.2.15") {
		t.Error("the DHCP address is still on eth0 after DHCP=no")
	}
	assertRequests(t, srv.requestsSince(t1), []string{
		"GET /ignition?mac=" + nodeMAC + "&phase=boot",
		"POST /api/v1/events booted", // answered 503
		"POST /api/v1/events booted",
	})
	for _, r := range srv.requestsSince(t1) {
		if strings.Contains(r.URI, "phase=install") || strings.Contains(r.URI, "/assets/") {
			t.Errorf("the installed node asked for %s %s", r.Method, r.URI)
		}
	}
	_ = boot1.cmd.Process.Kill() // power off, as a BMC does
	<-boot1.exited
	if n := dhcpFrom(t, filepath.Join(dir, "first.pcap"), nodeMAC); n == 0 {
		t.Error("no DHCP request in the first boot's capture: the capture check below would prove nothing")
	}

	// 3. A later boot, on SeaBIOS, of the same disk: no Ignition, no DHCP.
	second := filepath.Join(dir, "second.qcow2")
	overlay(t, first, "qcow2", second)
	t2 := time.Now()
	boot2 := startVM(t, "later-boot", "-netdev", "user,id=n0", "-device", nic, "-object", "filter-dump,id=f0,netdev=n0,file="+filepath.Join(dir, "second.pcap"),
		"-drive", "file="+second+",format=qcow2,if=none,id=d1", "-device", "virtio-blk-pci,drive=d1,bootindex=0")
	figure(t, "later boot (SeaBIOS): firmware to /init", boot2.waitLine(t, ctx, "testos: starting"))
	figure(t, "later boot: 'booted' callback", srv.waitEvent(t, ctx, boot2, "booted"))
	boot2.waitLine(t, ctx, "testos: ready")
	con = boot2.output()
	for _, want := range []string{"first_boot=false", "testos: not the first boot (no flatcar/first_boot on EFI-SYSTEM): Ignition does not run",
		"testos: hostname set from /etc/hostname hostname=" + nodeHostname, "role=worker", "inet " + staticAddr,
		"testos: network file applied file=00-internal.network iface=eth0 addresses=[" + staticAddr + "] dhcp=no dhcp_lease_dropped=false",
		"testos: unit racker-booted.service finished"} {
		if !strings.Contains(con, want) {
			t.Errorf("later boot console lacks %q", want)
		}
	}
	for _, r := range srv.requestsSince(t2) {
		if r.URI != "/api/v1/events" {
			t.Errorf("the node asked for %s %s on a later boot (only the booted callback is expected)", r.Method, r.URI)
		}
	}
	_ = boot2.cmd.Process.Kill()
	<-boot2.exited
	if n := dhcpFrom(t, filepath.Join(dir, "second.pcap"), nodeMAC); n != 0 {
		t.Errorf("the later boot sent %d DHCP packets from %s; DHCP=no means none", n, nodeMAC)
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
	fillFile(t, disk, 12<<30, 0)
	v := startVM(t, "install-fail",
		"-kernel", filepath.Join(release, "flatcar_production_pxe.vmlinuz"),
		"-initrd", filepath.Join(release, "flatcar_production_pxe_image.cpio.gz"),
		"-append", fmt.Sprintf("flatcar.first_boot=yes ignition.config.url=%s/ignition?mac=%s&phase=install console=ttyS0,115200n8 quiet", srv.base(), nodeMAC),
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
	why := "HTTP 404"
	if realInstaller(t) {
		why = "Image URL unavailable: " + srv.base() + "/assets/testos/no-such-version/flatcar_production_image.bin.bz2"
	}
	if !strings.Contains(v.output(), why) {
		t.Errorf("the console does not say why flatcar-install failed (%q)", why)
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

// assertWiped checks an old install can no longer boot: wipefs -a removed
// the protective MBR's boot signature and both GPT headers.
func assertWiped(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 1024)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	tail := make([]byte, 512)
	if _, err := f.ReadAt(tail, st.Size()-512); err != nil {
		t.Fatal(err)
	}
	if head[510] == 0x55 && head[511] == 0xaa {
		t.Errorf("%s: the old install's boot record signature is still there", path)
	}
	if string(head[512:520]) == "EFI PART" || string(tail[:8]) == "EFI PART" {
		t.Errorf("%s: a GPT header of the old install is still there", path)
	}
}

// assertBootable checks the install disk holds the Flatcar layout: a
// protective MBR with gptmbr.bin's boot signature and a GPT.
func assertBootable(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 1024)
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	if head[510] != 0x55 || head[511] != 0xaa || head[446+4] != 0xee || string(head[512:520]) != "EFI PART" {
		t.Errorf("%s: no protective MBR and GPT after the install: % x / %q", path, head[446:462], head[512:520])
	}
}
