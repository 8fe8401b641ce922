package vbmc

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func ptr(s string) *string { return &s }

// TestRedfishOverrideIsTheIPMIFlags: a PATCH writes parameter 5 as ipmitool
// would, and flags IPMI wrote read back in Redfish words.
func TestRedfishOverrideIsTheIPMIFlags(t *testing.T) {
	for _, tc := range []struct {
		patch bootPatch
		want  []byte
	}{
		{bootPatch{ptr("Once"), ptr("Pxe"), ptr("UEFI")}, []byte{0xa0, 0x04, 0, 0, 0}},
		{bootPatch{ptr("Continuous"), ptr("Pxe"), ptr("UEFI")}, []byte{0xe0, 0x04, 0, 0, 0}},
		{bootPatch{ptr("Continuous"), ptr("Hdd"), ptr("Legacy")}, []byte{0xc0, 0x08, 0, 0, 0}},
		{bootPatch{ptr("Once"), ptr("Hdd"), ptr("Legacy")}, []byte{0x80, 0x08, 0, 0, 0}},
		{bootPatch{ptr("Disabled"), ptr("None"), ptr("Legacy")}, []byte{0x00, 0x00, 0, 0, 0}},
	} {
		var b bootOptions
		if err := b.setOverride(tc.patch, t0); err != nil {
			t.Fatal(err)
		}
		if got := flagsOf(t, &b, t0); !bytes.Equal(got, tc.want) {
			t.Errorf("%s/%s/%s wrote %x, want %x", *tc.patch.Enabled, *tc.patch.Target, *tc.patch.Mode, got, tc.want)
		}
		o := b.override(t0)
		if o.Enabled != *tc.patch.Enabled || o.Target != *tc.patch.Target || o.Mode != *tc.patch.Mode {
			t.Errorf("read back %+v after writing %s/%s/%s", o, *tc.patch.Enabled, *tc.patch.Target, *tc.patch.Mode)
		}
	}

	// ipmitool chassis bootdev cdrom options=efiboot: selector 5.
	var b bootOptions
	mustSet(t, &b, paramBootFlags, []byte{0xa0, 0x14, 0, 0, 0}, t0)
	if o := b.override(t0); o != (bootOverride{"Once", "Cd", "UEFI"}) {
		t.Fatalf("IPMI cdrom flags read in Redfish as %+v", o)
	}
}

func TestRedfishOnceIsUsedUpAndNeverTimesOut(t *testing.T) {
	var b bootOptions
	if err := b.setOverride(bootPatch{ptr("Once"), ptr("Pxe"), nil}, t0); err != nil {
		t.Fatal(err)
	}
	// No 60 s rule in Redfish: still there an hour later, with no chassis control.
	later := t0.Add(time.Hour)
	if d := b.next(later); d != BootPXE {
		t.Fatalf("an hour later next = %v, want pxe (Redfish overrides do not time out)", d)
	}
	b.booted(later)
	if o := b.override(later); o.Enabled != "Disabled" || o.Target != "Pxe" {
		t.Fatalf("after the boot: %+v, want Disabled with the target kept", o)
	}
	if d := b.next(later); d != BootDefault {
		t.Fatalf("after the boot next = %v, want default", d)
	}
	// An IPMI write afterwards is timed again.
	mustSet(t, &b, paramBootFlags, []byte{0x80, 0x04, 0, 0, 0}, later)
	if d := b.next(later.Add(61 * time.Second)); d != BootDefault {
		t.Fatalf("IPMI flags written after a Redfish override escaped the 60 s rule (next = %v)", d)
	}
}

func TestRedfishPatchIsPartialAndAllOrNothing(t *testing.T) {
	var b bootOptions
	if err := b.setOverride(bootPatch{ptr("Continuous"), ptr("Pxe"), ptr("UEFI")}, t0); err != nil {
		t.Fatal(err)
	}
	// Only the target: enabled and mode stay.
	if err := b.setOverride(bootPatch{Target: ptr("Hdd")}, t0); err != nil {
		t.Fatal(err)
	}
	if o := b.override(t0); o != (bootOverride{"Continuous", "Hdd", "UEFI"}) {
		t.Fatalf("after a target-only PATCH: %+v", o)
	}
	// A bad value anywhere changes nothing.
	err := b.setOverride(bootPatch{Enabled: ptr("Once"), Target: ptr("Cd")}, t0)
	var pe *propertyError
	if !errors.As(err, &pe) || pe.Property != "Boot/BootSourceOverrideTarget" || pe.Value != "Cd" {
		t.Fatalf("PATCH of target Cd: %v", err)
	}
	if o := b.override(t0); o != (bootOverride{"Continuous", "Hdd", "UEFI"}) {
		t.Fatalf("a refused PATCH changed the flags: %+v", o)
	}
	for _, p := range []bootPatch{{Enabled: ptr("once")}, {Mode: ptr("BIOS")}} {
		if err := b.setOverride(p, t0); err == nil {
			t.Errorf("PATCH %+v accepted", p)
		}
	}
}

func TestSessionsExpireWhenIdleAndAreLimited(t *testing.T) {
	now := t0
	s := newSessionStore(time.Minute, 2, func() time.Time { return now })
	a, err := s.create("admin")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.create("admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.create("admin"); !errors.Is(err, errSessionLimit) {
		t.Fatalf("a third session: %v, want the limit", err)
	}
	now = now.Add(50 * time.Second)
	if _, ok := s.use(a.token); !ok { // a is used: its idle time restarts
		t.Fatal("a live session was refused")
	}
	now = now.Add(50 * time.Second) // b idle 100 s, a 50 s
	if _, ok := s.use(b.token); ok {
		t.Fatal("a session idle past the timeout was accepted")
	}
	if _, ok := s.use(a.token); !ok {
		t.Fatal("a session used 50 s ago expired")
	}
	if _, err := s.create("admin"); err != nil {
		t.Fatalf("no room after a session expired: %v", err)
	}
	if !s.remove(a.id) || s.remove(a.id) {
		t.Fatal("remove: want true once, then false")
	}
	if _, ok := s.use(a.token); ok {
		t.Fatal("a deleted session's token was accepted")
	}
	if _, ok := s.use(""); ok {
		t.Fatal("an empty token was accepted")
	}
}
