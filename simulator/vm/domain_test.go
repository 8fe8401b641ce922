package vm

import (
	"encoding/xml"
	"net"
	"testing"
)

// domainDoc is the part of libvirt's domain schema the conventions are about.
type domainDoc struct {
	Type     string `xml:"type,attr"`
	Name     string `xml:"name"`
	OnReboot string `xml:"on_reboot"`
	OnPower  string `xml:"on_poweroff"`
	OS       struct {
		Boot   []struct{} `xml:"boot"`
		Loader string     `xml:"loader"`
		NVRAM  string     `xml:"nvram"`
		BIOS   *struct {
			UseSerial string `xml:"useserial,attr"`
		} `xml:"bios"`
	} `xml:"os"`
	Disks []struct {
		Source struct {
			File string `xml:"file,attr"`
		} `xml:"source"`
		Target struct {
			Bus string `xml:"bus,attr"`
			Dev string `xml:"dev,attr"`
		} `xml:"target"`
		Boot *struct {
			Order int `xml:"order,attr"`
		} `xml:"boot"`
	} `xml:"devices>disk"`
	NICs []struct {
		MAC struct {
			Address string `xml:"address,attr"`
		} `xml:"mac"`
		Source struct {
			Bridge string `xml:"bridge,attr"`
		} `xml:"source"`
		Model struct {
			Type string `xml:"type,attr"`
		} `xml:"model"`
		Boot *struct {
			Order int `xml:"order,attr"`
		} `xml:"boot"`
	} `xml:"devices>interface"`
	Serial struct {
		Type   string `xml:"type,attr"`
		Source struct {
			Mode string `xml:"mode,attr"`
			Path string `xml:"path,attr"`
		} `xml:"source"`
		Log struct {
			File string `xml:"file,attr"`
		} `xml:"log"`
	} `xml:"devices>serial"`
}

func testSpec(fw Firmware, disks int, netFirst bool) Spec {
	var sizes []string
	for i := 0; i < disks; i++ {
		sizes = append(sizes, DefaultDiskSize)
	}
	return Spec{
		Name: "rsim-n1", Firmware: fw, Disks: sizes, NetworkFirst: netFirst, Dir: "/var/lib/racker-sim/rsim/n1",
		PrimaryMAC: net.HardwareAddr{0x52, 0x54, 0, 0, 1, 1}, SecondaryMAC: net.HardwareAddr{0x52, 0x54, 0, 0, 1, 3},
		InternalBridge: "rsim-int", PublicBridge: "rsim-pub",
	}
}

func parse(t *testing.T, s Spec) domainDoc {
	t.Helper()
	x, err := DomainXML(s)
	if err != nil {
		t.Fatal(err)
	}
	var d domainDoc
	if err := xml.Unmarshal([]byte(x), &d); err != nil {
		t.Fatalf("domain XML does not parse: %v\n%s", err, x)
	}
	return d
}

func TestDomainFollowsTheSimulatorConventions(t *testing.T) {
	d := parse(t, testSpec(BIOS, 2, true))
	if d.Type != "qemu" || d.Name != "rsim-n1" || d.OnReboot != "destroy" || d.OnPower != "destroy" {
		t.Fatalf("type/name/on_reboot/on_poweroff: %q %q %q %q", d.Type, d.Name, d.OnReboot, d.OnPower)
	}
	if len(d.OS.Boot) != 0 {
		t.Fatal("<os><boot dev> present: boot order must be per device")
	}
	if d.OS.BIOS == nil || d.OS.BIOS.UseSerial != "yes" || d.OS.Loader != "" {
		t.Fatal("SeaBIOS node without <bios useserial='yes'/> or with a loader")
	}
	if len(d.NICs) != 2 || d.NICs[0].MAC.Address != "52:54:00:00:01:01" || d.NICs[0].Source.Bridge != "rsim-int" ||
		d.NICs[1].MAC.Address != "52:54:00:00:01:03" || d.NICs[1].Source.Bridge != "rsim-pub" {
		t.Fatalf("NICs: %+v", d.NICs)
	}
	for _, n := range d.NICs {
		if n.Model.Type != "virtio" {
			t.Fatalf("NIC model %q", n.Model.Type)
		}
	}
	if d.NICs[0].Boot == nil || d.NICs[0].Boot.Order != 1 || d.NICs[1].Boot != nil {
		t.Fatal("network-first: the primary NIC must be boot order 1 and the secondary NIC not bootable")
	}
	// Every disk is in the boot list after the NIC, in disk order, as a
	// firmware lists a server's disks (a UEFI firmware tries each).
	if len(d.Disks) != 2 || d.Disks[0].Boot == nil || d.Disks[0].Boot.Order != 2 || d.Disks[1].Boot == nil || d.Disks[1].Boot.Order != 3 ||
		d.Disks[0].Target.Bus != "virtio" || d.Disks[0].Target.Dev != "vda" || d.Disks[1].Target.Dev != "vdb" {
		t.Fatalf("disks: %+v", d.Disks)
	}
	if d.Serial.Type != "unix" || d.Serial.Source.Mode != "bind" || d.Serial.Source.Path != "/var/lib/racker-sim/rsim/n1/console.sock" ||
		d.Serial.Log.File != "/var/lib/racker-sim/rsim/n1/console.log" {
		t.Fatalf("serial: %+v", d.Serial)
	}
}

func TestDomainDiskFirstAndUEFI(t *testing.T) {
	d := parse(t, testSpec(UEFI, 3, false))
	if d.NICs[0].Boot.Order != 4 || d.Disks[0].Boot.Order != 1 || d.Disks[2].Boot.Order != 3 || d.Disks[2].Target.Dev != "vdc" {
		t.Fatal("disk-first order not applied")
	}
	if d.OS.Loader != OVMFCode || d.OS.NVRAM != "/var/lib/racker-sim/rsim/n1/OVMF_VARS.fd" || d.OS.BIOS != nil {
		t.Fatalf("UEFI firmware: loader %q nvram %q", d.OS.Loader, d.OS.NVRAM)
	}
}

func TestDomainSpecIsChecked(t *testing.T) {
	for name, s := range map[string]Spec{
		"5 disks":  func() Spec { s := testSpec(BIOS, 5, true); return s }(),
		"no MAC":   func() Spec { s := testSpec(BIOS, 1, true); s.SecondaryMAC = nil; return s }(),
		"firmware": func() Spec { s := testSpec("coreboot", 1, true); return s }(),
	} {
		if _, err := DomainXML(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
