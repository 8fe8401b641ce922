package vbmc

// These tests drive the virtual BMC with the real ipmitool over loopback;
// the machine behind it is the in-memory memMachine (unit tier: no libvirt).
// libvirt_test.go repeats the essentials against a real domain.

import (
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

func TestIPMIPowerAndBootFlags(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	m := newMemMachine()
	b := startBMC(t, Config{Machine: m})

	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("power status = %q, want off", got)
	}

	// Persistent PXE with EFI, read back byte-exact, used on every start.
	b.mustIPMI(t, "chassis", "bootdev", "pxe", "options=persistent,efiboot")
	if got := b.bootParam5(t); got != "e004000000" {
		t.Fatalf("boot flags read back %q, want e004000000", got)
	}
	b.mustIPMI(t, "power", "on")
	if got := b.powerStatus(t); got != "Chassis Power is on" {
		t.Fatalf("after power on: %q", got)
	}
	// Power on is answered (and reads on) before the machine has started.
	eventually(t, "the start after power on", func() bool { return len(m.startLog()) == 1 })
	if got := devices(m.startLog()); got != "[pxe]" {
		t.Fatalf("starts = %s, want [pxe]", got)
	}
	if got := b.bootParam5(t); got != "e004000000" {
		t.Fatalf("persistent flags after a boot = %q, want e004000000", got)
	}

	// Next-boot-only disk: used by one power cycle, then gone.
	b.mustIPMI(t, "chassis", "bootdev", "disk")
	b.mustIPMI(t, "power", "cycle")
	if got := b.bootParam5(t); got != "0008000000" {
		t.Fatalf("next-boot-only flags after the boot = %q, want 0008000000 (valid bit cleared)", got)
	}
	m.guest(GuestReset)
	eventually(t, "restart after the guest reboot", func() bool { return len(m.startLog()) == 3 })
	if got := devices(m.startLog()); got != "[pxe disk default]" {
		t.Fatalf("starts = %s, want [pxe disk default]", got)
	}

	// Flags changed while the guest runs take effect on its own reboot.
	b.mustIPMI(t, "chassis", "bootdev", "pxe")
	m.guest(GuestReset)
	eventually(t, "restart after the second guest reboot", func() bool { return len(m.startLog()) == 4 })
	m.guest(GuestReset)
	eventually(t, "restart after the third guest reboot", func() bool { return len(m.startLog()) == 5 })
	if got := devices(m.startLog()); got != "[pxe disk default pxe default]" {
		t.Fatalf("starts = %s, want [pxe disk default pxe default]", got)
	}

	// A guest power-off stays off.
	m.guest(GuestPowerOff)
	eventually(t, "power status off after the guest powered off", func() bool {
		return b.powerStatus(t) == "Chassis Power is off"
	})
	if n := len(m.startLog()); n != 5 {
		t.Fatalf("the BMC restarted a guest that powered off (%d starts)", n)
	}

	// Power cycle of a machine that is off: refused (IPMI §28.3), nothing started.
	if out, err := b.ipmitool(t, "power", "cycle"); err == nil {
		t.Fatalf("power cycle of an off machine succeeded:\n%s", out)
	}
	b.mustIPMI(t, "power", "on")
	b.mustIPMI(t, "power", "off")
	if got := b.powerStatus(t); got != "Chassis Power is off" {
		t.Fatalf("after power off: %q", got)
	}
}

// TestIPMIDiagnostics: what a provisioner reads to identify a BMC.
func TestIPMIDiagnostics(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	b := startBMC(t, Config{Machine: newMemMachine()})
	for _, tc := range []struct{ args, want string }{
		{"mc info", "IPMI Version              : 2.0"},
		{"chassis status", "System Power         : off"},
		{"lan print 1", "IP Address              : 127.0.0.1"},
	} {
		if out := b.mustIPMI(t, strings.Fields(tc.args)...); !strings.Contains(out, tc.want) {
			t.Errorf("ipmitool %s lacks %q:\n%s", tc.args, tc.want, out)
		}
	}
}

func TestIPMIRefusesCipherSuiteZeroAndWrongPassword(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	b := startBMC(t, Config{Machine: newMemMachine()})

	if out, err := b.ipmitool(t, "-C", "0", "power", "status"); err == nil {
		t.Fatalf("cipher suite 0 accepted:\n%s", out)
	}
	for _, cs := range []string{"3", "17"} {
		if out := b.mustIPMI(t, "-C", cs, "power", "status"); !strings.Contains(out, "Chassis Power is off") {
			t.Fatalf("cipher suite %s: %s", cs, out)
		}
	}
	wrong := *b
	wrong.passFile = b.dir + "/wrong"
	writeFile(t, wrong.passFile, "not-the-password\n")
	if out, err := wrong.ipmitool(t, "power", "status"); err == nil {
		t.Fatalf("wrong password accepted:\n%s", out)
	}
	// IPMI v1.5 sessions are off.
	args := b.ipmitoolArgs("power", "status")
	args[1] = "lan"
	if out, err := runIPMITool(t, args...); err == nil {
		t.Fatalf("IPMI v1.5 session accepted:\n%s", out)
	}
}

func TestCredentialsNeverInErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/user", "admin\n")
	writeFile(t, dir+"/pass", "this-password-is-far-too-long-for-ipmi\n")
	cfg := Config{Machine: newMemMachine(), UserFile: dir + "/user", PasswordFile: dir + "/pass"}
	if err := cfg.complete(); err == nil {
		t.Fatal("config without address accepted")
	}
	cfg.Interface = "lo"
	if err := cfg.complete(); err != nil {
		t.Fatal(err)
	}
	_, _, err := cfg.credentials()
	if err == nil {
		t.Fatal("a 38-byte password accepted")
	}
	if strings.Contains(err.Error(), "far-too-long") {
		t.Fatalf("error shows the password: %v", err)
	}
	cfg.PasswordFile = dir + "/missing"
	if _, _, err := cfg.credentials(); err == nil || !strings.Contains(err.Error(), "IPMI password file") {
		t.Fatalf("missing password file: %v", err)
	}
}
