package bmc

import "fmt"

// Boot option parameters (IPMI 2.0 table 28-14) that SetBoot writes.
const (
	paramValidBitClearing = 3 // BMC boot flag valid bit clearing
	paramBootFlags        = 5

	// dontClearOnTimeout is parameter 3's bit 3: keep the valid bit even when
	// no chassis control arrives within 60 s. Without it many BMCs silently
	// drop the PXE request of a node whose power cycle comes a minute later.
	dontClearOnTimeout = 0x08
)

// Parameter 5, data byte 1 and 2 (IPMI 2.0 table 28-14).
const (
	flagValid      = 0x80
	flagPersistent = 0x40
	flagEFI        = 0x20

	selectorMask = 0x3c // byte 2 bits 5:2
	selectorPXE  = 0x04 // "force PXE"
	selectorDisk = 0x08 // "force boot from default hard drive"
)

// EncodeBootFlags returns the exact five data bytes of boot options
// parameter 5 for f. Only byte 1 (valid, persistent, EFI) and byte 2 (device)
// carry anything; the rest stay zero so no BMC applies an option by accident
// (CMOS clear, keyboard lock, console redirection). Tools that build these
// bytes from option strings could not combine persistent and EFI; this can.
func EncodeBootFlags(f BootFlags) [5]byte {
	var b [5]byte
	if f.Valid {
		b[0] |= flagValid
	}
	if f.Persistent {
		b[0] |= flagPersistent
	}
	if f.EFI {
		b[0] |= flagEFI
	}
	switch f.Device {
	case DevicePXE:
		b[1] = selectorPXE
	case DeviceDisk:
		b[1] = selectorDisk
	}
	return b
}

// DecodeBootFlags reads parameter 5 data as a BMC reports it. A device
// selector other than PXE or disk (CD, BIOS setup, …) reads as DeviceNone
// with an error naming the selector, so callers can show it.
func DecodeBootFlags(data []byte) (BootFlags, error) {
	if len(data) < 2 {
		return BootFlags{}, fmt.Errorf("boot flags: %d byte(s), want 5", len(data))
	}
	f := BootFlags{
		Valid:      data[0]&flagValid != 0,
		Persistent: data[0]&flagPersistent != 0,
		EFI:        data[0]&flagEFI != 0,
		Device:     DeviceNone,
	}
	switch sel := data[1] & selectorMask; sel {
	case 0:
	case selectorPXE:
		f.Device = DevicePXE
	case selectorDisk:
		f.Device = DeviceDisk
	default:
		return f, fmt.Errorf("boot flags: device selector %#02x is neither PXE nor disk", sel>>2)
	}
	return f, nil
}

// sameRequest says whether flags read back from a BMC are the ones written.
func sameRequest(want, got BootFlags) bool {
	return want.Valid == got.Valid && want.Device == got.Device &&
		want.Persistent == got.Persistent && want.EFI == got.EFI
}

// normalize fills a zero Device and marks an override as valid: a request
// for PXE or disk is always meant to be honoured.
func (f BootFlags) normalize() (BootFlags, error) {
	switch f.Device {
	case "":
		f.Device = DeviceNone
	case DevicePXE, DeviceDisk:
		f.Valid = true
	case DeviceNone:
	default:
		return f, fmt.Errorf("boot device %q: want pxe, disk or none", f.Device)
	}
	return f, nil
}
