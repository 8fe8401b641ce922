package testos

import (
	"bufio"
	"context"
	"fmt"
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

// RunInit is PID 1: it prepares the system, fetches and applies the node's
// Ignition config (from the kernel command line when netbooted, from the
// disk when installed), runs the enabled units, and then keeps the machine
// up with a shell on the console. It never returns.
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
	fetcher := HTTPFetcher{Client: &http.Client{Timeout: 2 * time.Minute}}
	cfg, primaryMAC := firstConfig(log, args, installed)
	nw := newNetwork(log)
	if err := nw.up(ctx, primaryMAC); err != nil {
		log.Error("network", "err", err)
	}
	if cfg != nil {
		runConfig(ctx, log, cfg, fetcher, nw, console)
	}
	log.Info("ready", "uptime", time.Since(started).Round(time.Millisecond).String(), "hostname", hostname())
	keepRunning(log, console)
}

// firstConfig finds the config to start from: the ignition.config.url config
// (fetched later, once the network is up) or the stored one on the disk. It
// answers the node's MAC from the config URL so DHCP can prefer that NIC.
func firstConfig(log *slog.Logger, args map[string]string, installed bool) (*Config, string) {
	if src := args["ignition.config.url"]; src != "" {
		log.Info("Ignition config from the kernel command line", "url", src)
		c := &Config{}
		c.Ignition.Version = "3.4.0"
		c.Ignition.Config.Replace.Source = &src
		return c, macOf(src)
	}
	if !installed {
		log.Warn("no ignition.config.url on the kernel command line: nothing to apply")
		return nil, ""
	}
	var data []byte
	var dev string
	var err error
	for i := 0; i < 50; i++ { // disks may still be probing
		if data, dev, err = FindStoredConfig("/sys/block"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		log.Error("no stored Ignition config", "err", err)
		return nil, ""
	}
	c, err := ParseConfig(data)
	if err != nil {
		log.Error("stored Ignition config", "device", dev, "err", err)
		return nil, ""
	}
	log.Info("Ignition config from the disk", "device", dev, "file", "/"+storedConfigPath)
	mac := ""
	if c.Ignition.Config.Replace.Source != nil {
		mac = macOf(*c.Ignition.Config.Replace.Source)
	}
	return c, mac
}

func macOf(src string) string {
	if u, err := url.Parse(src); err == nil {
		return u.Query().Get("mac")
	}
	return ""
}

// runConfig resolves the config (retrying fetches like Ignition, which waits
// for the network and the server rather than give up), applies it, sets the
// hostname, applies .network files and runs the enabled units.
func runConfig(ctx context.Context, log *slog.Logger, cfg *Config, f Fetcher, nw *network, console *os.File) {
	say := sayer(log)
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
	units, err := Apply(ctx, "/", resolved, f, say)
	if err != nil {
		log.Error("applying the Ignition config failed", "err", err)
		return
	}
	if name := strings.TrimSpace(readFile("/etc/hostname")); name != "" {
		if err := unix.Sethostname([]byte(name)); err != nil {
			log.Error("setting the hostname", "hostname", name, "err", err)
		} else {
			log.Info("hostname set from /etc/hostname", "hostname", name)
		}
	}
	// Flatcar's networkd applies written .network files before units that
	// want network-online.target (Racker's booted callback) run.
	nw.applyNetworkFiles("/etc/systemd/network")
	failed, _ := RunUnits(ctx, "/", units, ExecRunner(console, console), say)
	log.Info("units started", "enabled", len(units), "failed", len(failed))
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
