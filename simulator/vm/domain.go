// Package vm makes the simulated rack's servers: libvirt/QEMU domains (TCG,
// no KVM) that follow the simulator's domain conventions, so the virtual BMC
// can drive them like firmware drives real hardware.
//
// The conventions (contract D): domain type qemu named <instance>-<node>;
// on_reboot and on_poweroff destroy (the vBMC decides what a reboot means);
// no <os><boot dev>, only per-device <boot order> on the primary NIC and
// every disk (in disk order, as a firmware's boot list names them); NIC 1 =
// primary MAC on the internal bridge, NIC 2 = secondary MAC on the public
// bridge, both virtio; virtio qcow2 disks vda, vdb, …; SeaBIOS on the
// serial console or OVMF with a per-VM vars copy; the serial console on a
// unix socket, logged to a file.
package vm

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net"
	"text/template"
)

// Firmware is what a node boots with.
type Firmware string

const (
	BIOS Firmware = "bios" // SeaBIOS
	UEFI Firmware = "uefi" // OVMF
)

// OVMF files from Debian's ovmf package.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Spec is one server to build.
type Spec struct {
	Name           string // libvirt domain name, <instance>-<node>
	PrimaryMAC     net.HardwareAddr
	SecondaryMAC   net.HardwareAddr
	InternalBridge string
	PublicBridge   string
	// PrimaryTap and SecondaryTap name the host-side tap devices (≤ 15 chars)
	// so `ip link` and faults can find a node's cables.
	PrimaryTap, SecondaryTap string
	Firmware                 Firmware
	MemoryMiB                int
	CPUs                     int
	// Disks are the sizes of the blank disks (qemu-img sizes, e.g. "10G"),
	// 1 to MaxDisks; default one disk of DefaultDiskSize. They are sparse
	// qcow2 files, so a big disk costs nothing until written.
	Disks []string
	// Dir holds the VM's files: disks, NVRAM, console socket and log.
	Dir string
	// NetworkFirst puts the primary NIC before the first disk in the boot
	// order (a new server with nothing installed).
	NetworkFirst bool
}

// Files are where a VM's files live inside Spec.Dir.
type Files struct {
	Disks      []string
	NVRAM      string // UEFI only
	Console    string // unix socket of the serial console
	ConsoleLog string
}

// FilesOf names the files of a spec.
func FilesOf(s Spec) Files {
	f := Files{Console: s.Dir + "/console.sock", ConsoleLog: s.Dir + "/console.log"}
	for i := range s.Disks {
		f.Disks = append(f.Disks, fmt.Sprintf("%s/disk%d.qcow2", s.Dir, i))
	}
	if s.Firmware == UEFI {
		f.NVRAM = s.Dir + "/OVMF_VARS.fd"
	}
	return f
}

func (s Spec) validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("VM spec without a name")
	case len(s.PrimaryMAC) != 6 || len(s.SecondaryMAC) != 6:
		return fmt.Errorf("VM %s: primary and secondary MAC are required", s.Name)
	case s.InternalBridge == "" || s.PublicBridge == "":
		return fmt.Errorf("VM %s: both bridges are required", s.Name)
	case len(s.Disks) < 1 || len(s.Disks) > MaxDisks:
		return fmt.Errorf("VM %s: %d disks, want 1 to %d", s.Name, len(s.Disks), MaxDisks)
	case s.Firmware != BIOS && s.Firmware != UEFI:
		return fmt.Errorf("VM %s: firmware %q, want bios or uefi", s.Name, s.Firmware)
	case s.Dir == "":
		return fmt.Errorf("VM %s: no folder for its files", s.Name)
	case len(s.Dir)+len("/console.sock") > 107:
		return fmt.Errorf("VM %s: folder %s is too long for a unix socket path", s.Name, s.Dir)
	}
	return nil
}

func (s Spec) withDefaults() Spec {
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 1024
	}
	if s.CPUs == 0 {
		s.CPUs = 1
	}
	if len(s.Disks) == 0 {
		s.Disks = []string{DefaultDiskSize}
	}
	return s
}

// DefaultDiskSize is a simulated disk's size: over flatcar-install -s's
// 10,000,000,000 bytes (10 GiB is 10,737,418,240), so a real installer finds
// it as it would a real server's disk.
const DefaultDiskSize = "10G"

// MaxDisks is how many disks a VM may have (vda … vdd).
const MaxDisks = 4

// DomainXML renders the libvirt domain for a spec. It is pure so that the
// conventions other packages rely on are checked by unit tests. QEMU runs as
// root (static DAC label) because the VM's files live in the simulator's
// folders, which the unprivileged libvirt-qemu user cannot reach.
func DomainXML(s Spec) (string, error) {
	s = s.withDefaults()
	if err := s.validate(); err != nil {
		return "", err
	}
	f := FilesOf(s)
	// Disks first in their own order, then the NIC; or the NIC first.
	netOrder, diskOrder := len(f.Disks)+1, 1
	if s.NetworkFirst {
		netOrder, diskOrder = 1, 2
	}
	type disk struct {
		File, Target string
		Order        int
	}
	var disks []disk
	for i, file := range f.Disks {
		disks = append(disks, disk{file, "vd" + string(rune('a'+i)), diskOrder + i})
	}
	data := struct {
		Spec
		DiskList       []disk
		NVRAM, Console string
		ConsoleLog     string
		NetOrder       int
		Code           string
		Esc            func(string) string
	}{s, disks, f.NVRAM, f.Console, f.ConsoleLog, netOrder, OVMFCode, esc}
	var b bytes.Buffer
	if err := domainTmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("while rendering the domain XML of %s: %w", s.Name, err)
	}
	return b.String(), nil
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

var domainTmpl = template.Must(template.New("domain").Parse(`<domain type='qemu'>
  <name>{{call .Esc .Name}}</name>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>{{.CPUs}}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
{{- if eq .Firmware "uefi"}}
    <loader readonly='yes' type='pflash'>{{call .Esc .Code}}</loader>
    <nvram>{{call .Esc .NVRAM}}</nvram>
{{- else}}
    <bios useserial='yes' rebootTimeout='10000'/>
{{- end}}
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{{- range .DiskList}}
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{{call $.Esc .File}}'/>
      <target dev='{{.Target}}' bus='virtio'/>
      <boot order='{{.Order}}'/>
    </disk>
{{- end}}
    <interface type='bridge'>
      <mac address='{{.PrimaryMAC}}'/>
      <source bridge='{{call .Esc .InternalBridge}}'/>
{{- if .PrimaryTap}}
      <target dev='{{call .Esc .PrimaryTap}}'/>
{{- end}}
      <model type='virtio'/>
      <boot order='{{.NetOrder}}'/>
    </interface>
    <interface type='bridge'>
      <mac address='{{.SecondaryMAC}}'/>
      <source bridge='{{call .Esc .PublicBridge}}'/>
{{- if .SecondaryTap}}
      <target dev='{{call .Esc .SecondaryTap}}'/>
{{- end}}
      <model type='virtio'/>
    </interface>
    <serial type='unix'>
      <source mode='bind' path='{{call .Esc .Console}}'/>
      <log file='{{call .Esc .ConsoleLog}}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`))
