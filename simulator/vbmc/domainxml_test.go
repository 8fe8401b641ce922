package vbmc

import (
	"strings"
	"testing"
)

const sampleDomain = `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>rsim-n1</name>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
    <bios useserial='yes' rebootTimeout='0'/>
  </os>
  <devices>
    <disk type='file' device='cdrom'>
      <source file='/x.iso'/>
      <target dev='sdc' bus='sata'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <boot order='2'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/b.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:aa:00:01'/>
      <source bridge='rsim-int'/>
      <boot order='1'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:00:02'/>
      <source bridge='rsim-pub'/>
    </interface>
  </devices>
  <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>
</domain>`

func TestWithBootOrder(t *testing.T) {
	for _, tc := range []struct {
		first BootDevice
		mac   string
		want  string
	}{
		{BootPXE, "", "interface"},
		{BootPXE, "52:54:00:AA:00:01", "interface"},
		{BootDisk, "", "disk"},
		{BootDefault, "", "disk"},
	} {
		out, err := withBootOrder(sampleDomain, tc.first, tc.mac)
		if err != nil {
			t.Fatalf("%v: %v", tc.first, err)
		}
		got, err := bootOrderOf(out)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%v: order 1 on %q, want %q\n%s", tc.first, got, tc.want, out)
		}
		if n := strings.Count(out, "<boot "); n != 3 {
			t.Errorf("%v: %d boot elements, want 3 (os/boot removed, one per device)\n%s", tc.first, n, out)
		}
		// Every disk is in the list, in disk order: a UEFI firmware passes
		// over a blank first disk to the one holding the OS.
		vda, vdb := strings.Index(out, "/a.qcow2"), strings.Index(out, "/b.qcow2")
		wantA, wantB := "<boot order='1'/>", "<boot order='2'/>"
		if tc.first == BootPXE {
			wantA, wantB = "<boot order='2'/>", "<boot order='3'/>"
		}
		if !strings.Contains(out[vda-80:vda], wantA) || !strings.Contains(out[vdb-80:vdb], wantB) {
			t.Errorf("%v: disks not ordered %s, %s:\n%s", tc.first, wantA, wantB, out)
		}
		if !strings.Contains(out, "<qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>") ||
			!strings.Contains(out, "<bios useserial='yes' rebootTimeout='0'/>") {
			t.Errorf("%v: unrelated XML changed:\n%s", tc.first, out)
		}
		// Idempotent: applying the same order again changes nothing.
		again, err := withBootOrder(out, tc.first, tc.mac)
		if err != nil || again != out {
			t.Errorf("%v: second application changed the XML (err %v)", tc.first, err)
		}
	}
}

func TestWithBootOrderSecondaryMAC(t *testing.T) {
	out, err := withBootOrder(sampleDomain, BootPXE, "52:54:00:aa:00:02")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "<interface type='bridge'><boot order='1'/>\n      <mac address='52:54:00:aa:00:02'/>") {
		t.Fatalf("order 1 not on the interface with the chosen MAC:\n%s", out)
	}
	if _, err := withBootOrder(sampleDomain, BootPXE, "52:54:00:ff:ff:ff"); err == nil {
		t.Fatal("unknown MAC accepted")
	}
}

func TestWithBootOrderNoDisk(t *testing.T) {
	x := `<domain><devices><interface type='bridge'><mac address='52:54:00:00:00:01'/></interface></devices></domain>`
	for _, d := range []BootDevice{BootDisk, BootPXE, BootDefault} {
		out, err := withBootOrder(x, d, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := bootOrderOf(out); got != "interface" {
			t.Errorf("%v: diskless domain boots %q first, want interface", d, got)
		}
	}
	if _, err := withBootOrder(`<domain><devices></devices></domain>`, BootPXE, ""); err == nil {
		t.Error("domain with nothing to boot accepted")
	}
	if _, err := withBootOrder(`<domain><devices>`, BootPXE, ""); err == nil {
		t.Error("truncated XML accepted")
	}
}
