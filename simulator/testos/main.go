// Package testos is the simulator's test OS: the Go side of a tiny Linux
// that the simulated nodes boot instead of Flatcar (which cannot be
// downloaded in CI). It honours the same boot contract
// (docs/boot-contract.md), so Racker's provisioning path is identical for
// both: the kernel command line's ignition.config.url, an Ignition v3 subset,
// flatcar-install, the callbacks through curl, and a reboot into the
// installed disk, which then follows its stored config's replace source.
//
// One static binary plays every part (multi-call, by the name it runs as):
// /init (PID 1), flatcar-install (which runs Flatcar's own script when the
// image carries it, else a stand-in), curl and systemctl. Debian's programs
// that Flatcar's flatcar-install needs (bash, gawk, gpg, GNU wget,
// util-linux, coreutils, udevadm, …) and busybox provide the rest.
// scripts/build-testos.sh packs it with Debian's cloud kernel into a
// Flatcar-style release folder with a Flatcar-layout disk image.
package testos

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
	case "systemctl":
		return Systemctl(rest, os.Stdout, os.Stderr, rebootNow)
	case "reboot", "poweroff", "halt":
		return Systemctl([]string{name}, os.Stdout, os.Stderr, rebootNow)
	}
	fmt.Fprintf(os.Stderr, "testos: unknown applet %q (init, curl, flatcar-install, systemctl, reboot, poweroff, halt)\n", name)
	return 2
}

// RealInstaller is where the image keeps Flatcar's own flatcar-install
// (scripts/build-testos.sh puts it there when ../shared/peers has it).
const RealInstaller = "/usr/lib/testos/flatcar-install"

// ImageKeyPath is where the image keeps the public key its releases are
// signed with (scripts/build-testos.sh puts it there).
const ImageKeyPath = "/usr/share/testos/image-signing-key.asc"

// DefaultImageKey is what flatcar-install's arguments lack to verify a
// test OS image: Flatcar's flatcar-install verifies without -k against
// Flatcar's own key, built in, and the test OS's images are signed with
// the test key. So where args give no -k and the image has its key, it is
// "-k KEYFILE" (Lokomotive's installer, for one, passes no -k).
func DefaultImageKey(args []string, keyFile string) []string {
	for _, a := range args {
		if a == "--" {
			break
		}
		// getopts letters: -k FILE, -kFILE, or k last in a group (-yk FILE).
		if len(a) >= 2 && a[0] == '-' && a[1] != '-' && strings.ContainsRune(a[1:], 'k') && !strings.ContainsAny(a[1:strings.IndexRune(a, 'k')], "VBCdocitbf") {
			return nil
		}
	}
	if _, err := os.Stat(keyFile); err != nil {
		return nil
	}
	return []string{"-k", keyFile}
}

// flatcarInstallMain runs Flatcar's own flatcar-install when the image has
// it, and the stand-in otherwise; the console says which, so a test can
// tell an install by the real script from one by the stand-in.
func flatcarInstallMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := NewConsoleLogger(stdout)
	if key := DefaultImageKey(args, ImageKeyPath); key != nil {
		log.Info("flatcar-install: no -k given; verifying with the test OS's own image signing key, as Flatcar's flatcar-install verifies with Flatcar's", "key", ImageKeyPath)
		args = append(args, key...)
	}
	if b, err := os.ReadFile(RealInstaller); err == nil {
		log.Info("flatcar-install: running Flatcar's own flatcar-install", "path", RealInstaller,
			"sha256", fmt.Sprintf("%x", sha256.Sum256(b))[:16], "args", strings.Join(args, " "))
		err := syscall.Exec(RealInstaller, append([]string{RealInstaller}, args...), os.Environ())
		fmt.Fprintf(stderr, "flatcar-install: cannot run %s: %v\n", RealInstaller, err)
		return 1
	}
	log.Info("flatcar-install: Flatcar's flatcar-install is not in this image; running the test OS's stand-in", "args", strings.Join(args, " "))
	o, err := ParseInstallArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "flatcar-install: %v\n", err)
		return 2
	}
	in := Installer{
		SysBlock: "/sys/block",
		Mounts:   func() []string { return strings.Split(readFile("/proc/self/mounts"), "\n") },
		// No short overall timeout (a big image on a slow rack takes long),
		// but a server that never answers fails the install instead of
		// hanging it.
		Client: &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{
			ResponseHeaderTimeout: time.Minute, Proxy: nil}},
		StoreConfig: StoreConfig,
		Say:         func(s string) { fmt.Fprintln(stdout, s) },
	}
	if err := in.Install(ctx, o); err != nil {
		fmt.Fprintf(stderr, "flatcar-install: %v\n", err)
		return 1
	}
	return 0
}
