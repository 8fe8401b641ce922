package cli

import (
	"fmt"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// racker serve's unit is Type=notify: systemd counts the service started
// once it says READY=1, after the boot services' sockets are open, not
// when the process starts (units ordered After=racker-serve.service then
// really find DHCP and HTTP answering). Reloads and the stop are told
// too. Without $NOTIFY_SOCKET (not under systemd, or a service manager
// that does not offer one) these are no-ops.

// notifySystemd sends one notification to the service manager; a failure
// is logged, never fatal: the boot services matter more than the notice.
func (e *Env) notifySystemd(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		e.Logger().Warn("could not notify the service manager", "state", state, "err", err)
	}
}

// notifyReloading is RELOADING=1 with the monotonic time that systemd 253
// and later ask for with it.
func notifyReloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return daemon.SdNotifyReloading
	}
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000)
}
