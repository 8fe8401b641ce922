package web

import (
	"strings"

	"github.com/racker/racker/provisioner/ignition"
	"github.com/racker/racker/provisioner/images"
)

// The iPXE scripts are pure functions of their inputs (docs/boot-contract.md §1).

// bootScript is /boot.ipxe: the same for every machine, it sends iPXE on to
// the per-MAC script.
func bootScript(base string) string {
	return "#!ipxe\nchain " + base + "/ipxe?mac=${net0/mac}\n"
}

// installScript boots the OS's live system with the node's install config.
func installScript(base, mac, osName, version, console string) string {
	assets := base + "/assets/" + osName + "/" + version + "/"
	args := "initrd=" + images.Initrd + " flatcar.first_boot=yes ignition.config.url=" + ignition.IgnitionURL(base, mac, "install")
	if console != "" {
		args += " console=" + console
	}
	return "#!ipxe\n" +
		"kernel " + assets + images.Kernel + " " + args + "\n" +
		"initrd " + assets + images.Initrd + "\n" +
		"boot\n"
}

// diskScript hands an installed node back to its firmware, which boots the
// next device (the disk); sanboot is the fallback when exit returns.
func diskScript(mac string) string {
	return "#!ipxe\n" +
		"echo Racker: " + mac + " is installed, booting from disk\n" +
		"exit\n" +
		"sanboot --no-describe --drive 0x80\n"
}

// waitScript keeps a node that should install in iPXE until an OS release
// is available. It asks again rather than rebooting: the BMC's PXE flag is
// next-boot-only, so a reboot would fall through to whatever is on disk.
func waitScript(base, mac string) string {
	return "#!ipxe\n" +
		"echo Racker: no OS release is available yet, asking again in 30 s\n" +
		"sleep 30\n" +
		"chain --replace " + base + "/ipxe?mac=" + mac + "\n"
}

// noWindowScript keeps a node that should install in iPXE while Racker has
// opened no boot window for it (it netbooted on its own): it asks again
// rather than rebooting, like waitScript; the orchestrator power-cycles it
// into a window when it provisions it.
func noWindowScript(base, mac string) string {
	return "#!ipxe\n" +
		"echo Racker: no boot window is open for " + mac + " (Racker netboots it when it provisions it); asking again in 30 s\n" +
		"sleep 30\n" +
		"chain --replace " + base + "/ipxe?mac=" + mac + "\n"
}

// unknownScript never installs anything: it says why and reboots later, so
// a machine plugged in before it is in nodes.csv keeps asking.
func unknownScript(reason string) string {
	return "#!ipxe\n" +
		"echo Racker: " + scriptSafe(reason) + "\n" +
		"sleep 30\n" +
		"reboot\n"
}

// scriptSafe keeps text that ends up in an iPXE command line from
// expanding settings or starting a new command.
func scriptSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '$' || r == '\\' || r == '"' || r == '\'' || r == '&' || r == '|' || r == '#':
			return '_'
		case r < ' ' || r > '~':
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
