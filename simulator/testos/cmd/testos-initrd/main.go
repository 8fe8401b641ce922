// Command testos-initrd writes the test OS's initramfs (gzip'd cpio):
//
//	testos-initrd -o OUT.cpio.gz -init BIN -busybox /bin/busybox \
//	    -modules /lib/modules/VERSION -kver VERSION MODULE...
//
// It packs the multi-call init (as /init and as flatcar-install, wipefs,
// curl, systemctl), busybox with its applet links, the named kernel modules
// with their dependencies and the load list /etc/testos/modules, and
// /dev/console. scripts/build-testos.sh calls it.
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

	"github.com/racker/racker/simulator/testos/initrd"
	"github.com/racker/racker/simulator/testos/kmod"
)

// applets are the names the init binary answers to. reboot, poweroff and
// halt are the init's too: busybox's would signal PID 1 instead.
var applets = []string{"curl", "flatcar-install", "wipefs", "systemctl", "reboot", "poweroff", "halt"}

func main() {
	out := flag.String("o", "", "output file (.cpio.gz)")
	initBin := flag.String("init", "", "the static multi-call init binary")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox")
	modDir := flag.String("modules", "", "the kernel's /lib/modules/VERSION folder")
	kver := flag.String("kver", "", "kernel version (folder name under /lib/modules)")
	flag.Parse()
	if *out == "" || *initBin == "" || *modDir == "" || *kver == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := build(*out, *initBin, *busybox, *modDir, *kver, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "testos-initrd: %v\n", err)
		os.Exit(1)
	}
}

func build(out, initBin, busybox, modDir, kver string, modules []string) error {
	a := initrd.NewArchive()
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt", "opt", "var", "usr/bin", "home/core", "etc/systemd/system"} {
		a.Dir(d, 0o755)
	}
	// A merged /usr, as on Flatcar: /bin/sh, /usr/bin/env and /usr/sbin/X
	// all resolve, whatever path a unit or script names.
	for _, l := range []string{"bin", "sbin", "usr/sbin"} {
		a.Symlink(l, "/usr/bin")
	}
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
		a.File(path.Join("lib/modules", kver, rel), 0o644, data)
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
