// Package testos is the simulator's test OS: the Go side of a tiny Linux
// that the simulated nodes boot instead of Flatcar (which cannot be
// downloaded in CI). It honours the same boot contract
// (docs/boot-contract.md), so Racker's provisioning path is identical for
// both: the kernel command line's ignition.config.url, an Ignition v3 subset,
// flatcar-install, the callbacks through curl, and a reboot into the
// installed disk, which then follows its stored config's replace source.
//
// One static binary plays every part (multi-call, by the name it runs as):
// /init (PID 1), flatcar-install, wipefs, curl and systemctl. busybox
// provides the rest of the shell tools. scripts/build-testos.sh packs it
// with Debian's cloud kernel into a Flatcar-style release folder.
package testos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Main runs the applet named by args[0]'s base name ("testos APPLET …" also
// works) and returns the exit code. As PID 1 it never returns.
func Main(args []string) int {
	name, rest := filepath.Base(args[0]), args[1:]
	if (name == "testos" || name == "testos-init") && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch name {
	case "init":
		if os.Getpid() != 1 {
			fmt.Fprintln(os.Stderr, "testos: init must run as PID 1")
			return 1
		}
		RunInit()
		return 0 // not reached
	case "curl":
		return Curl(ctx, rest, os.Stdout, os.Stderr)
	case "flatcar-install":
		return flatcarInstallMain(ctx, rest, os.Stdout, os.Stderr)
	case "wipefs":
		return Wipefs(rest, os.Stdout, os.Stderr)
	case "systemctl":
		return Systemctl(rest, os.Stdout, os.Stderr, rebootNow)
	case "reboot", "poweroff", "halt":
		return Systemctl([]string{name}, os.Stdout, os.Stderr, rebootNow)
	}
	fmt.Fprintf(os.Stderr, "testos: unknown applet %q (init, curl, flatcar-install, wipefs, systemctl, reboot, poweroff, halt)\n", name)
	return 2
}

func flatcarInstallMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseInstallArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "flatcar-install: %v\n", err)
		return 2
	}
	log := NewConsoleLogger(stdout)
	in := Installer{
		SysBlock: "/sys/block",
		// No short overall timeout (a big image on a slow rack takes long),
		// but a server that never answers fails the install instead of
		// hanging it.
		Client: &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{
			ResponseHeaderTimeout: time.Minute, Proxy: nil}},
		StoreConfig: StoreConfig,
		Say:         sayer(log),
	}
	if err := in.Install(ctx, o); err != nil {
		fmt.Fprintf(stderr, "flatcar-install: %v\n", err)
		return 1
	}
	return 0
}
