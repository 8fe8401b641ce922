package bmc

import (
	"encoding/xml"
	"fmt"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"
)

// Domain XML edits of the libvirt driver: boot order, firmware type and the
// flags Racker keeps in <metadata>.

func inactiveXML(l *libvirt.Libvirt, d libvirt.Domain) (*xmlNode, error) {
	x, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLInactive|libvirt.DomainXMLSecure)
	if err != nil {
		return nil, fmt.Errorf("reading domain XML: %w", err)
	}
	return parseXMLTree(x)
}

// setBootOrder puts dev first: PXE = primary NIC 1, disk 2; disk (and none,
// the firmware's own choice) = disk 1, NIC 2. Every other boot element,
// including <os><boot dev=…/>, which libvirt refuses next to per-device
// order, is removed.
func setBootOrder(root *xmlNode, mac string, dev Device) {
	if os := root.child("os"); os != nil {
		os.removeChildren("boot")
	}
	if devs := root.child("devices"); devs != nil {
		for _, c := range devs.Children {
			if e, ok := c.(*xmlNode); ok {
				e.removeChildren("boot")
			}
		}
	}
	nic, disk := primaryNIC(root, mac), firstDisk(root)
	nicOrder, diskOrder := "2", "1"
	if dev == DevicePXE {
		nicOrder, diskOrder = "1", "2"
	}
	if nic != nil {
		nic.Children = append(nic.Children, &xmlNode{Name: "boot", Attrs: attrs("order", nicOrder)})
	}
	if disk != nil {
		disk.Children = append(disk.Children, &xmlNode{Name: "boot", Attrs: attrs("order", diskOrder)})
	}
}

func bootOrderDevice(root *xmlNode, mac string) Device {
	if nic := primaryNIC(root, mac); nic != nil {
		if b := nic.child("boot"); b != nil && b.attr("order") == "1" {
			return DevicePXE
		}
	}
	if disk := firstDisk(root); disk != nil {
		if b := disk.child("boot"); b != nil && b.attr("order") == "1" {
			return DeviceDisk
		}
	}
	return DeviceNone
}

func attrs(kv ...string) []xml.Attr {
	var out []xml.Attr
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, xml.Attr{Name: xml.Name{Local: kv[i]}, Value: kv[i+1]})
	}
	return out
}

// isEFI says whether the domain boots OVMF.
func isEFI(root *xmlNode) bool {
	os := root.child("os")
	if os == nil {
		return false
	}
	if os.attr("firmware") == "efi" {
		return true
	}
	if ld := os.child("loader"); ld != nil {
		for _, c := range ld.Children {
			if s, ok := c.(string); ok && (strings.Contains(strings.ToUpper(s), "OVMF") || strings.Contains(strings.ToLower(s), "efi")) {
				return true
			}
		}
	}
	return false
}

func storedFlags(root *xmlNode) (BootFlags, bool) {
	md := root.child("metadata")
	if md == nil {
		return BootFlags{}, false
	}
	for _, c := range md.Children {
		e, ok := c.(*xmlNode)
		if !ok || !strings.HasSuffix(e.Name, ":boot") || e.attr("xmlns:"+strings.TrimSuffix(e.Name, ":boot")) != rackerNS {
			continue
		}
		return BootFlags{
			Device:     Device(e.attr("device")),
			Persistent: e.attr("persistent") == "yes",
			EFI:        e.attr("efi") == "yes",
			Valid:      e.attr("valid") == "yes",
		}, true
	}
	return BootFlags{}, false
}

func storeFlags(root *xmlNode, f BootFlags) {
	md := root.ensure("metadata")
	kept := md.Children[:0]
	for _, c := range md.Children {
		if e, ok := c.(*xmlNode); ok && strings.HasSuffix(e.Name, ":boot") && e.attr("xmlns:"+strings.TrimSuffix(e.Name, ":boot")) == rackerNS {
			continue
		}
		kept = append(kept, c)
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	md.Children = append(kept, &xmlNode{Name: "racker:boot", Attrs: attrs(
		"xmlns:racker", rackerNS, "device", string(f.Device), "persistent", yes(f.Persistent),
		"efi", yes(f.EFI), "valid", yes(f.Valid))})
}
