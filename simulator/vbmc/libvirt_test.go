package vbmc

// Integration tests: the virtual BMC drives a real libvirt domain (TCG,
// SeaBIOS, a blank disk, a NIC on a bridge the test creates) and is driven
// by the real ipmitool. The domain reboots by itself: SeaBIOS finds nothing
// to boot and, with rebootTimeout 0, resets the guest, which is a genuine
// guest-initiated reboot (QEMU SHUTDOWN reason guest-reset).

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/vishvananda/netlink"

	"github.com/racker/racker/internal/testenv"
)

// testDomain is a tiny libvirt domain owned by one test.
type testDomain struct {
	l       *libvirt.Libvirt
	name    string
	console string // serial socket
}

func uniqueSuffix() string { return fmt.Sprintf("%d%03d", os.Getpid()%100000, rand.IntN(1000)) }

// newTestBridge creates an isolated bridge (no address, no uplink) for the
// VM's NIC and removes it when the test ends.
func newTestBridge(t *testing.T, name string) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("creating bridge %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netlink.LinkDel(br); err != nil {
			t.Errorf("removing bridge %s: %v", name, err)
		}
	})
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
}

func newTestDomain(t *testing.T) *testDomain {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireFile(t, DefaultLibvirtSocket)
	testenv.RequireCommand(t, "qemu-system-x86_64")
	qemuImg := testenv.RequireCommand(t, "qemu-img")

	suffix := uniqueSuffix()
	name := "vbmct-" + suffix
	bridge := "vbt" + suffix // ≤ 15 characters
	newTestBridge(t, bridge)

	dir, err := os.MkdirTemp("", "vbmc-domain-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	d := &testDomain{name: name, console: filepath.Join(dir, "console.sock")}

	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(DefaultLibvirtSocket)))
	if err := l.Connect(); err != nil {
		testenv.Missing(t, "libvirtd not answering on "+DefaultLibvirtSocket+": "+err.Error())
	}
	d.l = l
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", rand.IntN(256), rand.IntN(256), rand.IntN(256))
	x := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <bios useserial='yes' rebootTimeout='0'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <interface type='bridge'>
      <mac address='%s'/>
      <source bridge='%s'/>
      <model type='virtio'/>
      <rom enabled='no'/>
      <boot order='2'/>
    </interface>
    <serial type='unix'>
      <source mode='bind' path='%s'/>
      <log file='%s' append='on'/>
      <target port='0'/>
    </serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>`, name, disk, mac, bridge, d.console, filepath.Join(dir, "console.log"))
	dom, err := l.DomainDefineXML(x)
	if err != nil {
		l.Disconnect()
		t.Fatalf("defining domain %s: %v", name, err)
	}
	t.Cleanup(func() {
		if st, _, err := l.DomainGetState(dom, 0); err == nil && !isOff(libvirt.DomainState(st)) {
			l.DomainDestroy(dom)
		}
		if err := l.DomainUndefine(dom); err != nil {
			t.Errorf("undefining domain %s: %v", name, err)
		}
		l.Disconnect()
	})
	return d
}

// run reports the running domain's ID and which device its live XML boots
// first; ok is false while it is off.
func (d *testDomain) run(t *testing.T) (id int32, first string, ok bool) {
	t.Helper()
	dom, err := d.l.DomainLookupByName(d.name)
	if err != nil {
		t.Fatalf("lookup %s: %v", d.name, err)
	}
	st, _, err := d.l.DomainGetState(dom, 0)
	if err != nil || libvirt.DomainState(st) != libvirt.DomainRunning {
		return 0, "", false
	}
	x, err := d.l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return 0, "", false // stopped meanwhile
	}
	first, err = bootOrderOf(x)
	if err != nil {
		t.Fatal(err)
	}
	return dom.ID, first, true
}

// nextRun waits for the domain to run with an ID above after and returns it.
func (d *testDomain) nextRun(t *testing.T, after int32, what string) (int32, string) {
	t.Helper()
	var id int32
	var first string
	eventually(t, what, func() bool {
		var ok bool
		id, first, ok = d.run(t)
		return ok && id > after
	})
	return id, first
}

func TestVirtualBMCDrivesALibvirtDomain(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	d := newTestDomain(t)
	b := startBMC(t, Config{Domain: d.name, ConsoleSocket: d.console})

	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("power status = %q, want off", got)
	}

	// Next-boot-only PXE: the first start boots the NIC first, and the
	// flags are used up.
	b.mustIPMI(t, "chassis", "bootdev", "pxe")
	b.mustIPMI(t, "power", "on")
	if got := b.powerStatus(t); got != "Chassis Power is on" {
		t.Fatalf("after power on: %q", got)
	}
	id, first := d.nextRun(t, 0, "domain running after power on")
	if first != "interface" {
		t.Fatalf("first start boots %q first, want interface", first)
	}
	if got := b.bootParam5(t); got != "0004000000" {
		t.Fatalf("flags after one boot = %q, want 0004000000", got)
	}

	// SOL shows the VM's own console (SeaBIOS prints on the serial port).
	s := b.solActivate(t)
	// The session stays up across the guest's reboots, as a real BMC's does:
	// SeaBIOS gives up on two boots in a row on the same session.
	eventually(t, "SeaBIOS on the SOL console across a reboot", func() bool {
		return strings.Count(s.out.String(), "No bootable device") >= 2
	})
	s.quit(t)

	// The guest finds nothing to boot and reboots itself: the BMC starts it
	// again, now with the default order (disk first).
	id, first = d.nextRun(t, id, "domain restarted after the guest reboot")
	if first != "disk" {
		t.Fatalf("after the guest reboot the domain boots %q first, want disk (next-boot-only used up)", first)
	}

	// Persistent EFI PXE, read back byte-exact, honoured by the guest's own
	// reboots from then on.
	b.mustIPMI(t, "chassis", "bootdev", "pxe", "options=persistent,efiboot")
	if got := b.bootParam5(t); got != "e004000000" {
		t.Fatalf("boot flags read back %q, want e004000000", got)
	}
	// The reboot already under way may have read the old flags; the one
	// after it must use the new ones.
	id, _ = d.nextRun(t, id, "a restart after the flags changed")
	id, first = d.nextRun(t, id, "a second restart after the flags changed")
	if first != "interface" {
		t.Fatalf("after guest reboots with persistent PXE the domain boots %q first, want interface", first)
	}
	if got := b.bootParam5(t); got != "e004000000" {
		t.Fatalf("persistent flags after reboots = %q, want e004000000", got)
	}

	// Power off: the domain is off and the reboot loop does not bring it back.
	b.mustIPMI(t, "power", "off")
	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("after power off: %q", got)
	}
	if _, _, running := d.run(t); running {
		t.Fatal("domain still running after power off")
	}
}

// socketProxy forwards a unix socket to libvirtd so a test can break the
// BMC's connection (as a libvirtd restart would) without touching the
// libvirtd other tests share.
type socketProxy struct {
	path    string
	mu      sync.Mutex
	conns   []net.Conn
	accepts int
}

func newSocketProxy(t *testing.T, target string) *socketProxy {
	t.Helper()
	p := &socketProxy{path: filepath.Join(t.TempDir(), "libvirt.sock")}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.accepts++
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// cut closes every proxied connection.
func (p *socketProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *socketProxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

func TestVirtualBMCSurvivesALostLibvirtConnection(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	d := newTestDomain(t)
	proxy := newSocketProxy(t, DefaultLibvirtSocket)
	b := startBMC(t, Config{Domain: d.name, LibvirtSocket: proxy.path})

	b.mustIPMI(t, "chassis", "bootdev", "disk", "options=persistent")
	b.mustIPMI(t, "power", "on")
	id, _ := d.nextRun(t, 0, "domain running after power on")
	id, _ = d.nextRun(t, id, "domain restarted after a guest reboot")

	// The connection breaks while the guest reboots in a loop: commands
	// and guest events go on over a new one.
	before := proxy.accepted()
	proxy.cut()
	eventually(t, "the BMC dialling libvirtd again", func() bool { return proxy.accepted() > before })
	// (Power status right now may be off: a reboot during the cut is only
	// caught up with once the BMC subscribed again.)
	if got := b.bootParam5(t); got != "c008000000" {
		t.Fatalf("boot flags after the cut = %q, want c008000000", got)
	}
	id, _ = d.nextRun(t, id, "a restart after the cut")
	id, first := d.nextRun(t, id, "a second restart after the cut")
	if first != "disk" {
		t.Fatalf("restart boots %q first, want disk", first)
	}
	b.mustIPMI(t, "power", "off")
	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("after power off: %q", got)
	}
}
