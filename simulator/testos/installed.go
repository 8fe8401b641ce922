package testos

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FirstBootStamp is the file on the EFI System Partition whose presence
// means "first boot": Flatcar's GRUB then adds flatcar.first_boot=detected
// and the initramfs runs Ignition, which removes it. Every Flatcar image
// ships with it; every later boot runs without Ignition.
const FirstBootStamp = "flatcar/first_boot"

// sysroot is where the installed system's ROOT partition is mounted.
const sysroot = "/sysroot"

// persistentDirs are the folders of the installed system that live on ROOT
// (bind-mounted over the initramfs's), as everything outside /usr does on
// Flatcar: what Ignition writes there on the first boot is what later
// boots come up with.
var persistentDirs = []string{"etc", "home", "root", "opt", "var", "srv"}

// system is an installed disk of the Flatcar layout, as the booting init
// found it.
type system struct {
	disk      string // /dev/vda
	esp, oem  Partition
	root      Partition
	firstBoot bool
}

// findSystem finds the installed disk: the one whose GPT names its
// partitions EFI-SYSTEM, OEM and ROOT. With more than one (an old install
// on another disk), the first in name order wins and the console says so;
// Racker's reprovision wipes the others for this reason.
func findSystem(sysBlock string, log *slog.Logger) (*system, error) {
	var found []*system
	var tried []string
	for i := 0; i < 50; i++ { // disks may still be probing
		found, tried = nil, nil
		disks, err := ListDisks(sysBlock, nil)
		if err != nil {
			return nil, err
		}
		for _, d := range disks {
			parts, err := Partitions(sysBlock, d.Name)
			if err != nil {
				return nil, err
			}
			s := &system{disk: d.Dev()}
			var ok1, ok2, ok3 bool
			s.esp, ok1 = partitionByLabel(parts, "EFI-SYSTEM")
			s.oem, ok2 = partitionByLabel(parts, "OEM")
			s.root, ok3 = partitionByLabel(parts, "ROOT")
			if ok1 && ok2 && ok3 {
				found = append(found, s)
			} else {
				tried = append(tried, d.Name)
			}
		}
		if len(found) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no disk has the partitions EFI-SYSTEM, OEM and ROOT (disks: %s)", strings.Join(tried, ", "))
	}
	if len(found) > 1 {
		var names []string
		for _, s := range found {
			names = append(names, s.disk)
		}
		log.Warn("more than one disk holds an installed system; using the first", "disks", strings.Join(names, ","), "using", found[0].disk)
	}
	return found[0], nil
}

// mount mounts ROOT at /sysroot, gives it the initramfs's /etc files it
// lacks (Flatcar's /etc starts from the image's defaults the same way),
// bind-mounts its folders over the initramfs's, and reads the first-boot
// stamp from the EFI System Partition.
func (s *system) mount(log *slog.Logger) error {
	if err := waitForDevice(s.root.Dev, 10*time.Second); err != nil {
		return err
	}
	if err := os.MkdirAll(sysroot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(s.root.Dev, sysroot, "ext4", 0, ""); err != nil {
		return fmt.Errorf("while mounting ROOT (%s) at %s: %w", s.root.Dev, sysroot, err)
	}
	for _, d := range persistentDirs {
		if err := os.MkdirAll(filepath.Join(sysroot, d), 0o755); err != nil {
			return fmt.Errorf("while preparing ROOT: %w", err)
		}
	}
	if err := copyMissing("/etc", filepath.Join(sysroot, "etc")); err != nil {
		return fmt.Errorf("while giving ROOT the default /etc: %w", err)
	}
	for _, d := range persistentDirs {
		if err := unix.Mount(filepath.Join(sysroot, d), "/"+d, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("while bind-mounting ROOT's /%s: %w", d, err)
		}
	}
	err := withMount(s.esp.Dev, "vfat", true, func(dir string) error {
		_, err := os.Stat(filepath.Join(dir, FirstBootStamp))
		s.firstBoot = err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("while looking for the first-boot stamp: %w", err)
	}
	log.Info("installed system", "disk", s.disk, "root", s.root.Dev, "first_boot", s.firstBoot)
	return nil
}

// oemConfig reads config.ign from the OEM partition, where flatcar-install
// -i put it.
func (s *system) oemConfig() ([]byte, error) { return s.oemFile(OEMConfigFile) }

// oemFile reads a file from the OEM partition.
func (s *system) oemFile(name string) ([]byte, error) {
	var data []byte
	err := withMount(s.oem.Dev, "ext4", true, func(dir string) error {
		var err error
		data, err = os.ReadFile(filepath.Join(dir, name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("while reading %s from the OEM partition %s: %w", name, s.oem.Dev, err)
	}
	return data, nil
}

// removeStamp removes the first-boot stamp once Ignition has run, so no
// later boot runs it again.
func (s *system) removeStamp() error {
	return withMount(s.esp.Dev, "vfat", false, func(dir string) error {
		if err := os.Remove(filepath.Join(dir, FirstBootStamp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("while removing %s: %w", FirstBootStamp, err)
		}
		unix.Sync()
		return nil
	})
}

// copyMissing copies files, folders and symlinks from src that dst lacks.
func copyMissing(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if _, err := os.Lstat(to); err == nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil
	})
}
