package vbmc

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Redfish's ComputerSystem.Boot override is a second view of the very boot
// options the IPMI side keeps (parameter 5), so a client of either protocol
// sees what the other one set, and the firmware (chassis.startLocked) reads
// one set of flags:
//
//	BootSourceOverrideEnabled  Disabled | Once | Continuous  = valid bit, persistent bit
//	BootSourceOverrideTarget   None | Pxe | Hdd               = device selector
//	BootSourceOverrideMode     Legacy | UEFI                  = EFI bit
//
// A Once override is used up by the next boot exactly like a next-boot-only
// IPMI flag (the valid bit clears, so Enabled reads Disabled and the target
// stays for inspection). Redfish has no 60 s rule, so flags written here do
// not expire (bootOptions.untimed).

// Redfish values of the three properties.
const (
	overrideDisabled   = "Disabled"
	overrideOnce       = "Once"
	overrideContinuous = "Continuous"

	targetNone = "None"
	targetPxe  = "Pxe"
	targetHdd  = "Hdd"

	modeLegacy = "Legacy"
	modeUEFI   = "UEFI"
)

// What a PATCH may write: the targets a server without a CD drive or a
// setup menu worth booting into offers.
var (
	allowedEnabled = []string{overrideDisabled, overrideOnce, overrideContinuous}
	allowedTargets = []string{targetNone, targetPxe, targetHdd}
	allowedModes   = []string{modeLegacy, modeUEFI}
)

// selectorTargets names every IPMI device selector (Table 28-14, byte 2
// bits 5:2) a Redfish target reads back as, so flags that ipmitool set
// (`chassis bootdev cdrom`) show up in Redfish too. Unlisted selectors
// read as None.
var selectorTargets = map[byte]string{
	0x0: targetNone,
	0x1: targetPxe,
	0x2: targetHdd,
	0x3: targetHdd, // hard disk, safe mode
	0x5: "Cd",
	0x6: "BiosSetup",
	0xf: "Floppy", // primary remote media
}

// targetSelectors is the way back for the targets a PATCH may write.
var targetSelectors = map[string]byte{targetNone: 0x0, targetPxe: 0x1, targetHdd: 0x2}

// bootOverride is ComputerSystem.Boot as the vBMC reports it.
type bootOverride struct {
	Enabled string `json:"BootSourceOverrideEnabled"`
	Target  string `json:"BootSourceOverrideTarget"`
	Mode    string `json:"BootSourceOverrideMode"`
}

// bootPatch is the Boot object of a PATCH: a nil field keeps its value,
// as Redfish PATCH semantics say.
type bootPatch struct {
	Enabled *string `json:"BootSourceOverrideEnabled"`
	Target  *string `json:"BootSourceOverrideTarget"`
	Mode    *string `json:"BootSourceOverrideMode"`
}

// propertyError is a PATCH value the service does not accept; the HTTP
// layer answers it as Base.PropertyValueNotInList.
type propertyError struct {
	Property, Value string
	Allowed         []string
}

func (e *propertyError) Error() string {
	return fmt.Sprintf("the value %q of %s is not one of %s", e.Value, e.Property, strings.Join(e.Allowed, ", "))
}

// override reads the flags as Redfish shows them.
func (b *bootOptions) override(now time.Time) bootOverride {
	b.expire(now)
	o := bootOverride{Enabled: overrideDisabled, Target: targetNone, Mode: modeLegacy}
	if b.flags[0]&flagValid != 0 {
		o.Enabled = overrideOnce
		if b.flags[0]&flagPersistent != 0 {
			o.Enabled = overrideContinuous
		}
	}
	if t, ok := selectorTargets[(b.flags[1]>>2)&0x0f]; ok {
		o.Target = t
	}
	if b.flags[0]&flagEFI != 0 {
		o.Mode = modeUEFI
	}
	return o
}

// setOverride applies a PATCH of Boot. It checks every value before it
// changes anything (a PATCH is applied whole or not at all), then writes
// parameter 5's first two bytes the way an IPMI client would; the other
// three bytes, which Redfish does not address, stay as they were.
func (b *bootOptions) setOverride(p bootPatch, now time.Time) error {
	for _, c := range []struct {
		name    string
		v       *string
		allowed []string
	}{
		{"BootSourceOverrideEnabled", p.Enabled, allowedEnabled},
		{"BootSourceOverrideTarget", p.Target, allowedTargets},
		{"BootSourceOverrideMode", p.Mode, allowedModes},
	} {
		if c.v != nil && !slices.Contains(c.allowed, *c.v) {
			return &propertyError{Property: "Boot/" + c.name, Value: *c.v, Allowed: c.allowed}
		}
	}
	b.expire(now)
	f0, f1 := b.flags[0], b.flags[1]
	if p.Enabled != nil {
		f0 &^= flagValid | flagPersistent
		switch *p.Enabled {
		case overrideOnce:
			f0 |= flagValid
		case overrideContinuous:
			f0 |= flagValid | flagPersistent
		}
	}
	if p.Target != nil {
		f1 = f1&^0x3c | targetSelectors[*p.Target]<<2
	}
	if p.Mode != nil {
		f0 &^= flagEFI
		if *p.Mode == modeUEFI {
			f0 |= flagEFI
		}
	}
	b.flags[0], b.flags[1] = f0, f1
	if f0&flagValid != 0 {
		b.validSince = now
		b.chassisControl = false
		b.untimed = true
	}
	return nil
}
