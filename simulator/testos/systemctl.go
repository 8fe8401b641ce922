package testos

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"
)

// Systemctl implements the systemctl verbs scripts on a node use: reboot,
// poweroff (and halt) sync and act at once, through reboot(2), because the
// test OS has no service manager to ask; daemon-reload is a no-op. Other
// verbs fail loudly rather than pretend.
func Systemctl(args []string, stdout, stderr io.Writer, act func(cmd int) error) int {
	var verbs []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			verbs = append(verbs, a)
		}
	}
	if len(verbs) == 0 {
		fmt.Fprintln(stderr, "systemctl: usage: systemctl reboot|poweroff|halt|daemon-reload")
		return 2
	}
	var cmd int
	switch verbs[0] {
	case "reboot":
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	case "poweroff":
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	case "halt":
		cmd = unix.LINUX_REBOOT_CMD_HALT
	case "daemon-reload":
		return 0
	case "is-system-running":
		fmt.Fprintln(stdout, "running")
		return 0
	default:
		fmt.Fprintf(stderr, "systemctl: %q is not supported by the test OS\n", verbs[0])
		return 1
	}
	fmt.Fprintf(stdout, "testos: systemctl %s: syncing disks and going down\n", verbs[0])
	if err := act(cmd); err != nil {
		fmt.Fprintf(stderr, "systemctl: %s: %v\n", verbs[0], err)
		return 1
	}
	return 0
}

func rebootNow(cmd int) error {
	unix.Sync()
	return unix.Reboot(cmd)
}
