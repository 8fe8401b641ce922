package vbmc

import (
	"time"

	"github.com/bougou/go-ipmi/pkg/types"
)

// BootDevice is what the firmware tries first on the next start.
type BootDevice int

const (
	// BootDefault is the machine's own order: first disk, then network,
	// like a server whose BIOS was never told otherwise.
	BootDefault BootDevice = iota
	// BootPXE puts the primary interface first.
	BootPXE
	// BootDisk puts the first disk first.
	BootDisk
)

func (d BootDevice) String() string {
	switch d {
	case BootPXE:
		return "pxe"
	case BootDisk:
		return "disk"
	default:
		return "default"
	}
}

// System Boot Options parameter selectors (IPMI v2.0 Table 28-14) that the
// virtual BMC keeps. The others answer "parameter not supported".
const (
	paramSetInProgress = 0
	paramValidBitClear = 3
	paramBootInfoAck   = 4
	paramBootFlags     = 5
)

// Bits of parameter 5 byte 1 and of parameter 3 byte 1 (Table 28-14).
const (
	flagValid      = 0x80
	flagPersistent = 0x40
	flagEFI        = 0x20
	// dontClearOnTimeout is parameter 3 bit 3: keep the valid bit even
	// when no Chassis Control command follows within 60 s.
	dontClearOnTimeout = 0x08
)

// validBitTimeout is how long boot flags stay valid without a Chassis
// Control command unless parameter 3 says otherwise (§28.12: 60 s ± 10%).
// Real BMCs do this, and a provisioner that forgets parameter 3 must see
// its flags vanish here too, not first on hardware.
const validBitTimeout = 60 * time.Second

// bootOptions is the BMC's copy of the boot options a BIOS reads at start.
// It is pure state: the caller passes the time, so every rule (the 60 s
// timeout, next-boot-only consumption) is tested without a clock or a VM.
// Parameter 5 is kept exactly as written, so a read returns the same bytes.
type bootOptions struct {
	setInProgress byte
	clearMask     byte    // parameter 3
	ack           byte    // parameter 4 acknowledge bits
	flags         [5]byte // parameter 5, byte-exact
	// validSince is when the valid bit was last written; chassisControl says
	// whether a Chassis Control command came after it (which stops the timer).
	validSince     time.Time
	chassisControl bool
	// untimed says the valid flags came from Redfish, which has no 60 s
	// rule: a Redfish override holds until a boot uses it or it is changed.
	untimed bool
}

// set writes one parameter (Set System Boot Options data after the
// selector byte). It answers the completion code the command returns.
func (b *bootOptions) set(param byte, data []byte, now time.Time) types.CompletionCode {
	switch param {
	case paramSetInProgress:
		if len(data) != 1 {
			return types.CodeRequestDataLengthInvalid
		}
		if data[0]&0x03 == 0x03 {
			return types.CodeParameterOutOfRange // reserved value
		}
		b.setInProgress = data[0] & 0x03
	case paramValidBitClear:
		if len(data) != 1 {
			return types.CodeRequestDataLengthInvalid
		}
		b.clearMask = data[0] & 0x1f
	case paramBootInfoAck:
		if len(data) != 2 {
			return types.CodeRequestDataLengthInvalid
		}
		mask := data[0]
		b.ack = b.ack&^mask | data[1]&mask
	case paramBootFlags:
		if len(data) != 5 {
			return types.CodeRequestDataLengthInvalid
		}
		b.expire(now)
		copy(b.flags[:], data)
		if data[0]&flagValid != 0 {
			b.validSince = now
			b.chassisControl = false
			b.untimed = false
		}
	default:
		return types.CodeParameterNotSupported
	}
	return types.CodeOK
}

// get reads one parameter as Get System Boot Options answers it: parameter
// version, selector, data.
func (b *bootOptions) get(param byte, now time.Time) ([]byte, types.CompletionCode) {
	head := []byte{0x01, param}
	switch param {
	case paramSetInProgress:
		return append(head, b.setInProgress), types.CodeOK
	case paramValidBitClear:
		return append(head, b.clearMask), types.CodeOK
	case paramBootInfoAck:
		return append(head, 0x00, b.ack), types.CodeOK
	case paramBootFlags:
		b.expire(now)
		return append(head, b.flags[:]...), types.CodeOK
	default:
		return nil, types.CodeParameterNotSupported
	}
}

// noteChassisControl records a Chassis Control command: the restart the
// flags were set for has been initiated, so the 60 s timer stops.
func (b *bootOptions) noteChassisControl() { b.chassisControl = true }

// expire clears the valid bit when the 60 s timer ran out.
func (b *bootOptions) expire(now time.Time) {
	if b.flags[0]&flagValid == 0 || b.clearMask&dontClearOnTimeout != 0 || b.chassisControl || b.untimed {
		return
	}
	if now.Sub(b.validSince) >= validBitTimeout {
		b.flags[0] &^= flagValid
	}
}

// next says which device the firmware tries first if the machine starts now,
// without consuming anything.
func (b *bootOptions) next(now time.Time) BootDevice {
	b.expire(now)
	if b.flags[0]&flagValid == 0 {
		return BootDefault
	}
	switch (b.flags[1] >> 2) & 0x0f {
	case 0x1:
		return BootPXE
	case 0x2, 0x3: // hard disk, hard disk in safe mode
		return BootDisk
	default:
		return BootDefault
	}
}

// booted records that the firmware read the flags: next-boot-only flags are
// used up (valid bit cleared, the rest kept for inspection), persistent
// flags stay.
func (b *bootOptions) booted(now time.Time) {
	b.expire(now)
	if b.flags[0]&flagValid != 0 && b.flags[0]&flagPersistent == 0 {
		b.flags[0] &^= flagValid
	}
}

// efi says whether the flags ask for an EFI boot (reported, not enforced:
// firmware is the machine's, not the BMC's).
func (b *bootOptions) efi() bool { return b.flags[0]&flagEFI != 0 }
