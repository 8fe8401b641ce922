package bootsvc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// testosDir is the test OS release folder (make testos); RACKER_TESTOS_DIR
// overrides it.
func testosDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RACKER_TESTOS_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "bin", "testos")
	}
	testenv.RequireFile(t, filepath.Join(dir, "current", "flatcar_production_pxe.vmlinuz"))
	return dir
}

// firmware says how a VM starts.
type firmware struct {
	name string
	args func(t *testing.T) []string // machine arguments
	// noROM removes the NIC's option ROM (QEMU's iPXE), so the firmware's
	// own PXE client boots.
	noROM bool
}

var (
	seabiosIPXE = firmware{name: "SeaBIOS with QEMU's iPXE ROM",
		args: func(t *testing.T) []string { return nil }}
	ovmfOwnPXE = firmware{name: "OVMF with its own PXE client", noROM: true,
		args: func(t *testing.T) []string {
			code := testenv.RequireFile(t, "/usr/share/OVMF/OVMF_CODE_4M.fd")
			vars, err := os.ReadFile(testenv.RequireFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd"))
			if err != nil {
				t.Fatal(err)
			}
			varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
			os.WriteFile(varsCopy, vars, 0o644)
			return []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
				"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy}
		}}
)

// TestQEMUNetbootSeaBIOS and TestQEMUNetbootOVMF boot a VM (TCG) from the
// network through racker serve: firmware DHCP → (TFTP ipxe.efi on OVMF) →
// iPXE → /boot.ipxe → the node's install script → test OS kernel and initrd
// over HTTP → its init fetches the install Ignition and reports back with
// POST /api/v1/events. The test waits for the node's own "installing"
// callback, which the server accepts only from the node's address.
func TestQEMUNetbootSeaBIOS(t *testing.T) { netbootVM(t, seabiosIPXE) }
func TestQEMUNetbootOVMF(t *testing.T)    { netbootVM(t, ovmfOwnPXE) }

func netbootVM(t *testing.T, fw firmware) {
	testenv.RequireRoot(t)
	qemu := testenv.RequireCommand(t, "qemu-system-x86_64")
	testenv.RequireFile(t, "/usr/lib/ipxe/undionly.kpxe")
	testenv.RequireFile(t, "/usr/lib/ipxe/ipxe.efi")
	if !fw.noROM {
		testenv.RequireFile(t, "/usr/lib/ipxe/qemu/efi-virtio.rom") // QEMU's default ROM for virtio-net
	}
	tos := testosDir(t)
	fwArgs := fw.args(t)

	n := newTestNet(t)
	// The VM's tap joins the test network's bridge, beside the server's veth.
	tap := addTap(t, "rkt"+suffix(), n.bridge)

	vm := rackNode{primary: "52:54:00:bb:10:01", bmc: "52:54:00:bb:10:02", secondary: "52:54:00:bb:10:03", typ: "worker"}
	r := newRack(t, n, vm)
	serve(t, n, r, "--os", "testos", "--testos-dir", tos)
	// Racker opens the node's boot window before it powers it on.
	inNS(t, n.srvNS, "busybox", "wget", "-q", "-O", "-", "--post-data", "", "http://127.0.0.1:8080/api/v1/nodes/"+vm.primary+"/netboot")

	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.Truncate(createFile(t, disk), 256<<20); err != nil {
		t.Fatal(err)
	}
	serial := filepath.Join(t.TempDir(), "serial.log")
	nic := "virtio-net-pci,netdev=n0,mac=" + vm.primary + ",bootindex=1"
	if fw.noROM {
		nic += ",romfile="
	}
	args := append([]string{"-accel", "tcg", "-m", "768", "-smp", "1",
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:" + serial,
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", nic,
		"-drive", "file=" + disk + ",format=raw,if=virtio"}, fwArgs...)
	cmd := exec.Command(qemu, args...)
	qlog := filepath.Join(t.TempDir(), "qemu.log")
	qf, _ := os.Create(qlog)
	cmd.Stdout, cmd.Stderr = qf, qf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	// Wait for the node's callback; firmware under TCG takes seconds to
	// minutes, so the bound is generous and only stops a hung test.
	deadline := time.After(8 * time.Minute)
	for {
		evs := events(t, r.state)
		if hasEvent(evs, vm.primary, api.KindInstalling, "") {
			t.Logf("%s: netbooted to the test OS's installing callback in %s", fw.name, time.Since(start).Round(100*time.Millisecond))
			for _, want := range []api.EventKind{api.KindDHCP, api.KindIPXE, api.KindIgnition} {
				if !hasEvent(evs, vm.primary, want, "") {
					t.Errorf("no %s event for the VM on the way: %s", want, summarize(evs))
				}
			}
			if fw.noROM && !hasEvent(evs, vm.primary, api.KindTFTP, "ipxe.efi") {
				t.Errorf("OVMF without an iPXE ROM did not fetch ipxe.efi over TFTP: %s", summarize(evs))
			}
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("QEMU exited (%v) before the node called back\nevents: %s\nserial:\n%s\nqemu:\n%s", err, summarize(evs), tail(serial), tail(qlog))
		case <-deadline:
			t.Fatalf("no installing callback from the VM\nevents: %s\nserial:\n%s", summarize(evs), tail(serial))
		case <-time.After(time.Second):
		}
	}
}

func createFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func summarize(evs []api.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("\n  " + string(e.Kind) + " " + e.MAC + " " + e.Message)
	}
	return b.String()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// addTap makes a persistent tap device on bridge (in the root namespace,
// where netenv's bridges are), up, for QEMU to open by name; it is removed
// when the test ends.
func addTap(t *testing.T, name, bridge string) string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Fatalf("creating tap %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netlink.LinkDel(tap); err != nil {
			t.Errorf("removing tap %s: %v", name, err)
		}
	})
	if err := netlink.LinkSetUp(tap); err != nil {
		t.Fatalf("setting tap %s up: %v", name, err)
	}
	return name
}
