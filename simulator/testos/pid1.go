package testos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// moduleList is written by the build: the kernel modules to load, in
// dependency order, as paths under /lib/modules.
const moduleList = "/etc/testos/modules"

// RunInit is PID 1. It prepares the system; runs Ignition when this is a
// first boot (netbooted with flatcar.first_boot and ignition.config.url, or
// installed with the first-boot stamp on the EFI System Partition, reading
// OEM's config.ign); configures the network from the .network files as
// systemd-networkd would; runs the enabled units; and then keeps the
// machine up with a shell on the console. It never returns.
func RunInit() {
	console := os.Stdout
	log := NewConsoleLogger(console)
	started := time.Now()
	handleSignals(log)
	mountEarly(log)
	args := ParseCmdline(readFile("/proc/cmdline"))
	installed := args["testos.root"] == "disk"
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	phase := "live (netboot)"
	if installed {
		phase = "installed (booted from disk)"
	}
	log.Info("starting", "kernel", unix.ByteSliceToString(uts.Release[:]), "system", phase)
	_ = unix.Sethostname([]byte("localhost"))
	loadModules(log)
	if err := seedEntropy(); err != nil {
		log.Warn("could not seed the random pool; DHCP may wait for entropy", "err", err)
	}

	ctx := context.Background()
	nw := newNetwork(log)
	var sys *system
	var cfg *Config
	if installed {
		var err error
		if sys, err = findSystem("/sys/block", log); err == nil {
			err = sys.mount(log)
		}
		if err != nil {
			log.Error("cannot boot the installed system", "err", err)
			keepRunning(log, console)
		}
		if sys.firstBoot {
			cfg = oemIgnition(log, sys)
		} else {
			log.Info("not the first boot (no " + FirstBootStamp + " on EFI-SYSTEM): Ignition does not run")
		}
	} else {
		cfg = cmdlineIgnition(log, args)
	}
	primaryMAC := ""
	if cfg != nil {
		primaryMAC = macOf(ptrOr(cfg.Ignition.Config.Replace.Source))
		if !runIgnition(ctx, log, cfg, nw, primaryMAC, sys) {
			log.Error("Ignition failed: the boot stops here (Flatcar would enter its emergency shell)")
			keepRunning(log, console)
		}
	}
	// The booted system: systemd-networkd, the hostname, the enabled units.
	netOK := nw.applyNetworkFiles(ctx, "/etc/systemd/network", primaryMAC)
	if name := strings.TrimSpace(readFile("/etc/hostname")); name != "" {
		if err := unix.Sethostname([]byte(name)); err != nil {
			log.Error("setting the hostname", "hostname", name, "err", err)
		} else {
			log.Info("hostname set from /etc/hostname", "hostname", name)
		}
	}
	units := EnabledUnits("/")
	failed, _ := RunUnits(ctx, "/", units, ExecRunner(console, console), sayer(log))
	log.Info("units started", "enabled", len(units), "failed", len(failed))
	network := "configured"
	if !netOK {
		network = "failed"
	}
	log.Info("ready", "uptime", time.Since(started).Round(time.Millisecond).String(), "hostname", hostname(), "network", network)
	keepRunning(log, console)
}

// cmdlineIgnition is the netbooted system's config: Flatcar's PXE initramfs
// runs Ignition only with flatcar.first_boot on the kernel command line
// (Racker's iPXE script passes it), from ignition.config.url.
func cmdlineIgnition(log *slog.Logger, args map[string]string) *Config {
	fb, ok := args["flatcar.first_boot"]
	if !ok {
		fb, ok = args["coreos.first_boot"]
	}
	if !ok || fb == "0" || fb == "no" || fb == "false" {
		log.Warn("no flatcar.first_boot on the kernel command line: Ignition does not run")
		return nil
	}
	src := args["ignition.config.url"]
	if src == "" {
		log.Warn("no ignition.config.url on the kernel command line: nothing to apply")
		return nil
	}
	log.Info("Ignition config from the kernel command line", "url", src)
	c := &Config{}
	c.Ignition.Version = "3.4.0"
	c.Ignition.Config.Replace.Source = &src
	return c
}

// oemIgnition is the installed system's first-boot config: config.ign on
// the OEM partition (flatcar-install -i), else the ignition.config.url
// that the OEM partition's grub.cfg appends to the kernel command line
// (Lokomotive's installer writes one; Flatcar's GRUB sources that file).
func oemIgnition(log *slog.Logger, sys *system) *Config {
	data, err := sys.oemConfig()
	if errors.Is(err, fs.ErrNotExist) {
		if grub, gerr := sys.oemFile(OEMGrubFile); gerr == nil {
			if src := GrubAppend(string(grub))["ignition.config.url"]; src != "" {
				log.Info("first boot: Ignition config from the URL the OEM partition's grub.cfg appends to the kernel command line", "url", src)
				c := &Config{}
				c.Ignition.Version = "3.0.0"
				c.Ignition.Config.Replace.Source = &src
				return c
			}
		}
	}
	if err != nil {
		log.Error("first boot, but no Ignition config", "err", err)
		return nil
	}
	c, err := ParseConfig(data)
	if err != nil {
		log.Error("first boot: the Ignition config on the OEM partition", "device", sys.oem.Dev, "err", err)
		return nil
	}
	log.Info("first boot: Ignition config from the OEM partition", "device", sys.oem.Dev, "file", OEMConfigFile)
	return c
}

func ptrOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func macOf(src string) string {
	if u, err := url.Parse(src); err == nil {
		return u.Query().Get("mac")
	}
	return ""
}

// runIgnition is the first boot's Ignition: DHCP on every link (the
// initramfs's network), the config resolved (retrying fetches like
// Ignition, which waits for the network and the server rather than give
// up), applied, and, on an installed system, the first-boot stamp removed.
func runIgnition(ctx context.Context, log *slog.Logger, cfg *Config, nw *network, primaryMAC string, sys *system) bool {
	if err := nw.dhcpAll(ctx, primaryMAC); err != nil {
		log.Error("network", "err", err)
	}
	say := sayer(log)
	f := HTTPFetcher{Client: &http.Client{Timeout: 2 * time.Minute}}
	var resolved *Config
	for attempt, delay := 1, time.Second; ; attempt++ {
		var err error
		if resolved, err = Resolve(ctx, f, cfg, say); err == nil {
			break
		}
		log.Warn("Ignition config not available yet, retrying", "attempt", attempt, "err", err)
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Second)
	}
	if err := Apply(ctx, "/", resolved, f, say); err != nil {
		log.Error("applying the Ignition config failed", "err", err)
		return false
	}
	if sys != nil {
		if err := sys.removeStamp(); err != nil {
			log.Error("Ignition ran, but the first-boot stamp stays", "err", err)
			return false
		}
		log.Info("Ignition done; removed the first-boot stamp", "file", FirstBootStamp)
	}
	return true
}

func mountEarly(log *slog.Logger) {
	mounts := []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"devpts", "/dev/pts", "devpts"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
	for _, m := range mounts {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			log.Warn("mount failed", "dir", m.dir, "err", err)
		}
	}
	// systemd's sysctl defaults (50-default.conf), which Flatcar has: when
	// the first address of a subnet goes (a dropped DHCP lease), the others
	// of that subnet (a static one) stay.
	for _, p := range []string{"/proc/sys/net/ipv4/conf/all/promote_secondaries", "/proc/sys/net/ipv4/conf/default/promote_secondaries"} {
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			log.Warn("sysctl", "file", p, "err", err)
		}
	}
	// What udev and systemd make on every Linux system: bash's process
	// substitution (flatcar-install's tee >(…)) opens /dev/fd/N.
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, link)
	}
}

// loadModules loads the build's module list with finit_module, in order
// (dependencies first); modules that are already in are fine.
func loadModules(log *slog.Logger) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	f, err := os.Open(moduleList)
	if err != nil {
		log.Warn("no module list", "err", err)
		return
	}
	defer f.Close()
	var loaded []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		rel := strings.TrimSpace(s.Text())
		if rel == "" {
			continue
		}
		if err := loadModule(filepath.Join(dir, rel)); err != nil {
			log.Warn("module not loaded", "module", rel, "err", err)
			continue
		}
		loaded = append(loaded, strings.TrimSuffix(filepath.Base(rel), ".ko"))
	}
	log.Info("modules loaded", "modules", strings.Join(loaded, ","))
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return err
	}
	return nil
}

// keepRunning keeps PID 1 alive: a shell on the console (respawned when it
// exits) and the reaping of every orphan.
func keepRunning(log *slog.Logger, console *os.File) {
	tty := console
	if t, err := os.OpenFile("/dev/ttyS0", os.O_RDWR, 0); err == nil {
		tty = t
	}
	attr := &os.ProcAttr{
		Dir:   "/root",
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=vt100", "PS1=" + hostname() + " # "},
		Files: []*os.File{tty, tty, tty},
		Sys:   &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	_ = os.MkdirAll("/root", 0o700)
	start := func() int {
		p, err := os.StartProcess("/bin/sh", []string{"-sh"}, attr)
		if err != nil {
			log.Error("no console shell", "err", err)
			return -1
		}
		return p.Pid
	}
	shell := start()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			time.Sleep(time.Second)
			if shell < 0 {
				shell = start()
			}
			continue
		}
		if pid == shell {
			time.Sleep(time.Second)
			shell = start()
		}
	}
}

// handleSignals keeps PID 1 alive: Go's default for SIGHUP, SIGUSR1 and
// SIGUSR2 is to exit, and PID 1 exiting panics the kernel. The signals
// sysvinit-style tools send to PID 1 get their meaning: SIGTERM reboot,
// SIGUSR2 power off, SIGUSR1 halt.
func handleSignals(log *slog.Logger) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	go func() {
		for sig := range ch {
			cmd := map[os.Signal]int{unix.SIGTERM: unix.LINUX_REBOOT_CMD_RESTART, unix.SIGUSR2: unix.LINUX_REBOOT_CMD_POWER_OFF, unix.SIGUSR1: unix.LINUX_REBOOT_CMD_HALT}
			if c, ok := cmd[sig]; ok {
				log.Info("going down", "signal", sig.String())
				_ = rebootNow(c)
				continue
			}
			log.Info("ignoring signal", "signal", sig.String())
		}
	}()
}

// ParseCmdline splits a kernel command line into key=value pairs (a flag
// without "=" maps to ""), honouring double quotes as the kernel does.
func ParseCmdline(s string) map[string]string {
	out := map[string]string{}
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case !inQuote && (r == ' ' || r == '\n' || r == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		out[k] = v
	}
	return out
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return h
}
