// Command testos-initrd writes the test OS's initramfs (gzip'd cpio):
//
//	testos-initrd -o OUT.cpio.gz -init BIN -busybox /bin/busybox \
//	    -modules /lib/modules/VERSION -kver VERSION \
//	    [-root DIR]... [-tool /usr/bin/gawk]... [-flatcar-install FILE] MODULE...
//
// It packs the multi-call init (as /init and as flatcar-install, curl,
// systemctl, reboot, poweroff, halt), Debian's programs named by -tool with
// every shared library they need (found under each -root, then the build
// machine's /), Flatcar's own flatcar-install script when given, busybox
// for every other command, the named kernel modules with their dependencies
// and the load list /etc/testos/modules, and /dev/console. The layout is a
// merged /usr like Flatcar's. scripts/build-testos.sh calls it.
package main

import (
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/racker/racker/simulator/testos"
	"github.com/racker/racker/simulator/testos/elfdeps"
	"github.com/racker/racker/simulator/testos/initrd"
	"github.com/racker/racker/simulator/testos/kmod"
)

// applets are the names the init binary answers to. reboot, poweroff and
// halt are the init's too: busybox's would signal PID 1 instead.
var applets = []string{"curl", "flatcar-install", "systemctl", "reboot", "poweroff", "halt"}

// FlatcarInstallPath is where the image keeps Flatcar's own flatcar-install;
// the flatcar-install applet runs it when it is there (testos.RealInstaller).
const FlatcarInstallPath = "usr/lib/testos/flatcar-install"

// aliases are extra names for Debian programs, as Flatcar has them.
var aliases = map[string]string{"awk": "gawk"}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	out := flag.String("o", "", "output file (.cpio.gz)")
	initBin := flag.String("init", "", "the static multi-call init binary")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox")
	modDir := flag.String("modules", "", "the kernel's /lib/modules/VERSION folder")
	kver := flag.String("kver", "", "kernel version (folder name under /lib/modules)")
	installer := flag.String("flatcar-install", "", "Flatcar's flatcar-install script (absent: the init's stand-in runs)")
	imageKey := flag.String("image-key", "", "the public key the test OS images are signed with (flatcar-install's default key)")
	var roots, tools listFlag
	flag.Var(&roots, "root", "a folder of unpacked packages searched for programs and libraries before / (repeatable)")
	flag.Var(&tools, "tool", "a program (absolute path as installed) to carry with its libraries (repeatable)")
	flag.Parse()
	if *out == "" || *initBin == "" || *modDir == "" || *kver == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg := config{out: *out, initBin: *initBin, busybox: *busybox, modDir: *modDir, kver: *kver,
		modules: flag.Args(), roots: append(roots, "/"), tools: tools, installer: *installer, imageKey: *imageKey}
	if err := build(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "testos-initrd: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	out, initBin, busybox, modDir, kver string
	modules, roots, tools               []string
	installer, imageKey                 string
}

func build(c config) error {
	out, initBin, busybox, modDir, kver, modules := c.out, c.initBin, c.busybox, c.modDir, c.kver, c.modules
	a := initrd.NewArchive()
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt", "opt", "var", "srv", "usr/bin", "usr/lib", "usr/lib64", "home/core", "etc/systemd/system", "sysroot"} {
		a.Dir(d, 0o755)
	}
	// A merged /usr, as on Flatcar: /bin/sh, /usr/bin/env, /usr/sbin/X and
	// the loader's /lib64/ld-linux-x86-64.so.2 all resolve, whatever path a
	// unit, a script or an ELF header names.
	for _, l := range []string{"bin", "sbin", "usr/sbin"} {
		a.Symlink(l, "/usr/bin")
	}
	a.Symlink("lib", "usr/lib")
	a.Symlink("lib64", "usr/lib64")
	a.Dir("root", 0o700)
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)

	data, err := os.ReadFile(initBin)
	if err != nil {
		return fmt.Errorf("while reading the init binary: %w", err)
	}
	a.File("init", 0o755, data)
	for _, name := range applets {
		a.Symlink("usr/bin/"+name, "/init")
	}

	if err := addTools(a, c.roots, c.tools); err != nil {
		return err
	}
	if c.installer != "" {
		if data, err = os.ReadFile(c.installer); err != nil {
			return fmt.Errorf("while reading Flatcar's flatcar-install: %w", err)
		}
		a.File(FlatcarInstallPath, 0o755, data)
	}
	if c.imageKey != "" {
		if data, err = os.ReadFile(c.imageKey); err != nil {
			return fmt.Errorf("while reading the image signing key: %w", err)
		}
		a.File(strings.TrimPrefix(testos.ImageKeyPath, "/"), 0o644, data)
	}

	if data, err = os.ReadFile(busybox); err != nil {
		return fmt.Errorf("while reading busybox: %w", err)
	}
	a.File("usr/bin/busybox", 0o755, data)
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("while listing busybox applets: %w", err)
	}
	for _, name := range strings.Fields(string(list)) {
		if name != "busybox" && !a.Has("usr/bin/"+name) {
			a.Symlink("usr/bin/"+name, "busybox")
		}
	}

	idx, err := kmod.Scan(modDir)
	if err != nil {
		return err
	}
	order, err := kmod.LoadOrder(modDir, idx, modules)
	if err != nil {
		return err
	}
	for _, rel := range order {
		if data, err = os.ReadFile(filepath.Join(modDir, rel)); err != nil {
			return fmt.Errorf("while reading module %s: %w", rel, err)
		}
		a.File(path.Join("usr/lib/modules", kver, rel), 0o644, data)
	}
	a.File("etc/testos/modules", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	a.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\ncore:x:500:500:Flatcar-style user:/home/core:/bin/sh\n"))
	a.File("etc/group", 0o644, []byte("root:x:0:\ncore:x:500:\n"))
	a.File("etc/os-release", 0o644, []byte("NAME=\"Racker test OS\"\nID=testos\nPRETTY_NAME=\"Racker test OS (kernel "+kver+")\"\n"))

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("while creating %s: %w", tmp, err)
	}
	defer os.Remove(tmp)
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := a.WriteTo(zw); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("while compressing %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("while writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// addTools puts each program at /usr/bin/NAME (the merged /usr makes
// /usr/sbin and /sbin the same folder) and its interpreter and libraries at
// the paths the loader will open; aliases link to them.
func addTools(a *initrd.Archive, roots, tools []string) error {
	if len(tools) == 0 {
		return nil
	}
	files, err := elfdeps.Resolver{Roots: roots}.Closure(tools...)
	if err != nil {
		return fmt.Errorf("while finding the libraries of the test OS's programs: %w", err)
	}
	isTool := map[string]bool{}
	for _, t := range tools {
		isTool[t] = true
	}
	for _, f := range files {
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return fmt.Errorf("while reading %s: %w", f.Source, err)
		}
		target := strings.TrimPrefix(f.Target, "/")
		if isTool[f.Target] {
			target = "usr/bin/" + path.Base(f.Target)
		}
		a.File(target, 0o755, data)
	}
	for alias, prog := range aliases {
		if a.Has("usr/bin/"+prog) && !a.Has("usr/bin/"+alias) {
			a.Symlink("usr/bin/"+alias, prog)
		}
	}
	return nil
}
