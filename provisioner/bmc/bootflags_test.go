package bmc

import (
	"fmt"
	"testing"
)

// Every combination of device, persistence, firmware type and valid bit,
// with the bytes IPMI 2.0 table 28-14 gives for it.
func TestEncodeBootFlagsEveryCombination(t *testing.T) {
	for _, dev := range []struct {
		d    Device
		byte byte
	}{{DeviceNone, 0x00}, {DevicePXE, 0x04}, {DeviceDisk, 0x08}} {
		for _, valid := range []bool{false, true} {
			for _, persistent := range []bool{false, true} {
				for _, efi := range []bool{false, true} {
					f := BootFlags{Device: dev.d, Valid: valid, Persistent: persistent, EFI: efi}
					var b1 byte
					if valid {
						b1 |= 0x80
					}
					if persistent {
						b1 |= 0x40
					}
					if efi {
						b1 |= 0x20
					}
					want := [5]byte{b1, dev.byte, 0, 0, 0}
					got := EncodeBootFlags(f)
					if got != want {
						t.Errorf("EncodeBootFlags(%+v) = % x, want % x", f, got, want)
					}
					back, err := DecodeBootFlags(got[:])
					if err != nil || back != f {
						t.Errorf("DecodeBootFlags(% x) = %+v, %v; want %+v", got, back, err, f)
					}
				}
			}
		}
	}
	// The combination ipmitool 1.8.18 could not send, spelled out.
	if got := EncodeBootFlags(BootFlags{Device: DevicePXE, Persistent: true, EFI: true, Valid: true}); fmt.Sprintf("% x", got) != "e0 04 00 00 00" {
		t.Errorf("persistent EFI PXE = % x, want e0 04 00 00 00", got)
	}
}

func TestDecodeBootFlagsOtherDevicesAndShortData(t *testing.T) {
	if _, err := DecodeBootFlags([]byte{0x80, 0x14, 0, 0, 0}); err == nil { // CD/DVD
		t.Error("CD/DVD selector decoded without error")
	}
	if _, err := DecodeBootFlags([]byte{0x80}); err == nil {
		t.Error("one byte decoded without error")
	}
	// ipmi_sim's answer after "set boot pxe": flags not valid.
	f, err := DecodeBootFlags([]byte{0x00, 0x04, 0, 0, 0})
	if err != nil || f.Valid || f.Device != DevicePXE {
		t.Errorf("ipmi_sim answer = %+v, %v", f, err)
	}
}

func TestNormalizeMarksOverridesValid(t *testing.T) {
	f, err := BootFlags{Device: DevicePXE}.normalize()
	if err != nil || !f.Valid {
		t.Fatalf("normalize(pxe) = %+v, %v", f, err)
	}
	if _, err := (BootFlags{Device: "cdrom"}).normalize(); err == nil {
		t.Fatal("cdrom accepted")
	}
}
