package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/racker/racker/internal/testenv"
)

const libvirtSock = "/var/run/libvirt/libvirt-sock"

// testDomain defines a small TCG domain with the simulator's conventions
// (per-device boot order, unix socket serial, SeaBIOS on serial) whose NIC
// is a tap attached to nothing, so it never sends traffic anywhere.
func testDomain(t *testing.T) (name, mac string, lv *libvirt.Libvirt) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireFile(t, libvirtSock)
	lv = libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(libvirtSock)))
	if err := lv.Connect(); err != nil {
		testenv.Missing(t, "libvirtd is not answering on "+libvirtSock+": "+err.Error())
	}
	t.Cleanup(func() { lv.Disconnect() })

	// qemu runs as libvirt-qemu: the folder must be reachable for it.
	dir, err := os.MkdirTemp("", "racker-bmc-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Truncate(disk, 1<<20)

	suffix := rand.Uint32() & 0xffffff
	name = fmt.Sprintf("rbmc-%d-%06x", os.Getpid(), suffix)
	mac = fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(suffix>>16), byte(suffix>>8), byte(suffix))
	xml := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><bios useserial='yes'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='%s'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='unix'>
      <source mode='bind' path='%s'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>`, name, disk, mac, filepath.Join(dir, "console.sock"))
	d, err := lv.DomainDefineXML(xml)
	if err != nil {
		t.Fatalf("define test domain: %v", err)
	}
	t.Cleanup(func() {
		lv.DomainDestroy(d)
		if err := lv.DomainUndefine(d); err != nil {
			t.Errorf("undefine %s: %v", name, err)
		}
		// libvirt keeps a per-domain QEMU log; leave nothing behind.
		os.Remove(filepath.Join("/var/log/libvirt/qemu", name+".log"))
	})
	return name, mac, lv
}

func liveXML(t *testing.T, lv *libvirt.Libvirt, name string, flags libvirt.DomainXMLFlags) *xmlNode {
	t.Helper()
	d, err := lv.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	x, err := lv.DomainGetXMLDesc(d, flags)
	if err != nil {
		t.Fatal(err)
	}
	root, err := parseXMLTree(x)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestLibvirtDriver(t *testing.T) {
	name, mac, lv := testDomain(t)
	ctx := context.Background()
	c := openTest(t, "libvirt:///"+name, Options{Node: mac, PrimaryMAC: mac, LibvirtSocket: libvirtSock})

	if s, err := c.PowerState(ctx); err != nil || s != PowerOff {
		t.Fatalf("PowerState = %q, %v; want off", s, err)
	}
	verified, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE})
	if err != nil || !verified {
		t.Fatalf("SetBoot(pxe) = %v, %v", verified, err)
	}
	if got := bootOrderDevice(liveXML(t, lv, name, libvirt.DomainXMLInactive), mac); got != DevicePXE {
		t.Fatalf("boot order puts %q first, want pxe", got)
	}
	if f, err := c.Boot(ctx); err != nil || f != (BootFlags{Device: DevicePXE, Valid: true}) {
		t.Fatalf("Boot = %+v, %v", f, err)
	}

	if err := c.Power(ctx, ActionOn); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.PowerState(ctx); s != PowerOn {
		t.Fatalf("after on: %q", s)
	}
	// The running domain started from PXE; next-boot-only is then consumed.
	if got := bootOrderDevice(liveXML(t, lv, name, 0), mac); got != DevicePXE {
		t.Fatalf("running domain boots %q first, want pxe", got)
	}
	if got := bootOrderDevice(liveXML(t, lv, name, libvirt.DomainXMLInactive), mac); got != DeviceDisk {
		t.Fatalf("after the start, the definition boots %q first, want disk", got)
	}
	if f, _ := c.Boot(ctx); f.Valid {
		t.Fatalf("next-boot-only flags still valid after the boot: %+v", f)
	}

	// Console: a second one is refused; SeaBIOS shows up after a reset.
	con, err := c.Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	byMAC := openTest(t, "libvirt:///", Options{Node: mac, PrimaryMAC: mac, LibvirtSocket: libvirtSock})
	if _, err := byMAC.Console(ctx); !errors.Is(err, ErrConsoleBusy) {
		t.Fatalf("second console: %v; want ErrConsoleBusy", err)
	}
	if err := c.Power(ctx, ActionReset); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		tmp := make([]byte, 256)
		for !strings.Contains(buf.String(), "SeaBIOS") {
			n, err := con.Read(tmp)
			buf.Write(tmp[:n])
			if err != nil {
				buf.WriteString("[read error: " + err.Error() + "]")
				break
			}
		}
		got <- buf.String()
	}()
	select {
	case out := <-got:
		if !strings.Contains(out, "SeaBIOS") {
			t.Fatalf("console output %q lacks SeaBIOS", out)
		}
	case <-time.After(3 * time.Minute): // a bound for a broken console, not a speed goal (TCG on a busy host)
		t.Fatal("no SeaBIOS banner on the console")
	}
	con.Close()

	// Found by MAC, as libvirt:/// with the node's primary MAC.
	d, err := byMAC.Diag(ctx)
	if err != nil || d.Address != "libvirt:///"+name || d.MAC != mac || d.Power != PowerOn || !d.SOLAvailable {
		t.Fatalf("Diag by MAC = %+v, %v", d, err)
	}
	if v, err := byMAC.SetBoot(ctx, BootFlags{Device: DeviceDisk, Persistent: true}); err != nil || !v {
		t.Fatalf("SetBoot(disk) = %v, %v", v, err)
	}
	if err := byMAC.Power(ctx, ActionCycle); err != nil {
		t.Fatal(err)
	}
	if f, _ := byMAC.Boot(ctx); f != (BootFlags{Device: DeviceDisk, Persistent: true, Valid: true}) {
		t.Fatalf("persistent flags after a cycle = %+v", f)
	}
	if err := byMAC.Power(ctx, ActionOff); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.PowerState(ctx); s != PowerOff {
		t.Fatalf("after off: %q", s)
	}
	if _, err := Open(ctx, "libvirt:///", Options{PrimaryMAC: "52:54:00:ff:ff:fe", LibvirtSocket: libvirtSock}); err != nil {
		t.Fatal(err)
	}
	ghost := openTest(t, "libvirt:///", Options{Node: "52:54:00:ff:ff:fe", PrimaryMAC: "52:54:00:ff:ff:fe", LibvirtSocket: libvirtSock})
	if _, err := ghost.PowerState(ctx); err == nil || !strings.Contains(err.Error(), "no libvirt domain has a NIC with MAC 52:54:00:ff:ff:fe") ||
		!strings.Contains(err.Error(), "looked at") || !strings.Contains(err.Error(), name) {
		t.Fatalf("unknown MAC: %v; want the MAC and the domains looked at, %s among them", err, name)
	}

	// A shut-off domain cannot be reset; a missing one is named with the node.
	if err := c.Power(ctx, ActionReset); err == nil || !strings.Contains(err.Error(), "node is off") {
		t.Fatalf("reset of a shut-off domain: %v", err)
	}
	missing := openTest(t, "libvirt:///"+name+"-gone", Options{Node: "n9 (52:54:00:ff:ff:fd)", LibvirtSocket: libvirtSock})
	for what, err := range map[string]error{"power on": missing.Power(ctx, ActionOn), "status": func() error { _, err := missing.PowerState(ctx); return err }()} {
		if err == nil || !strings.Contains(err.Error(), "n9 (52:54:00:ff:ff:fd)") || !strings.Contains(err.Error(), `finding domain "`+name+`-gone"`) {
			t.Errorf("%s of a missing domain: %v; want the node and the domain tried", what, err)
		}
	}
}

// libvirtd not running (or its socket elsewhere): every operation fails
// at once with the node, the operation and the socket tried.
func TestLibvirtDriverWithoutLibvirtd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "libvirt-sock") // nothing listens there
	c := openTest(t, "libvirt:///rsim-n1", Options{Node: "n1 (52:54:00:00:01:01)", LibvirtSocket: sock, TryTimeout: time.Second})
	ctx := context.Background()
	start := time.Now()
	_, err := c.PowerState(ctx)
	for what, err := range map[string]error{
		"reading power state": err,
		"power on":            c.Power(ctx, ActionOn),
		"setting boot device": func() error { _, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE}); return err }(),
	} {
		if err == nil {
			t.Fatalf("%s without libvirtd succeeded", what)
		}
		for _, want := range []string{"n1 (52:54:00:00:01:01)", "libvirt:///rsim-n1", what, sock, "is libvirtd running?"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", what, err, want)
			}
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("three failing operations took %s", d)
	}
}

func TestXMLTreeRoundTripKeepsUnknownContent(t *testing.T) {
	in := `<domain type='qemu'><name>a&amp;b</name><metadata><x:y xmlns:x="urn:x" k="v">t</x:y></metadata><devices><disk device='disk'><boot order='3'/></disk></devices></domain>`
	root, err := parseXMLTree(in)
	if err != nil {
		t.Fatal(err)
	}
	setBootOrder(root, "", DevicePXE)
	storeFlags(root, BootFlags{Device: DevicePXE, Valid: true})
	out := root.String()
	for _, want := range []string{"<name>a&amp;b</name>", `<x:y xmlns:x='urn:x' k='v'>t</x:y>`, "<boot order='2'/></disk>", "racker:boot xmlns:racker='" + rackerNS + "' device='pxe'"} {
		if !strings.Contains(out, want) {
			t.Errorf("round trip lacks %q:\n%s", want, out)
		}
	}
	back, _ := parseXMLTree(out)
	if f, ok := storedFlags(back); !ok || f.Device != DevicePXE || !f.Valid {
		t.Errorf("stored flags = %+v, %v", f, ok)
	}
}
