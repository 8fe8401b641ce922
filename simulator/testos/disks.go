package testos

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Disk is a whole disk as the kernel lists it under /sys/block.
type Disk struct {
	Name string // vda, sdb, nvme0n1
	Size int64  // bytes
}

// Dev is the disk's device node.
func (d Disk) Dev() string { return "/dev/" + d.Name }

// ListDisks lists the disks under sysBlock (normally /sys/block) that an
// install can target: sd*, vd*, xvd* and nvme*n*, not read-only, not
// removable, not empty, sorted by name. The same patterns as the contract's wipe-all loop.
func ListDisks(sysBlock string) ([]Disk, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("while listing disks in %s: %w", sysBlock, err)
	}
	var disks []Disk
	for _, e := range entries {
		name := e.Name()
		if !isDiskName(name) {
			continue
		}
		if ro, _ := readInt(filepath.Join(sysBlock, name, "ro")); ro != 0 {
			continue
		}
		if rm, _ := readInt(filepath.Join(sysBlock, name, "removable")); rm != 0 {
			continue
		}
		sectors, err := readInt(filepath.Join(sysBlock, name, "size"))
		if err != nil || sectors == 0 {
			continue
		}
		disks = append(disks, Disk{Name: name, Size: sectors * 512})
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

func isDiskName(name string) bool {
	switch {
	case strings.HasPrefix(name, "sd"), strings.HasPrefix(name, "vd"), strings.HasPrefix(name, "xvd"):
		return true
	case strings.HasPrefix(name, "nvme"):
		return strings.Contains(name[4:], "n")
	}
	return false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// SmallestDisk picks flatcar-install -s's disk: the smallest one (ties by name).
func SmallestDisk(disks []Disk) (Disk, error) {
	if len(disks) == 0 {
		return Disk{}, fmt.Errorf("no disk found to install to")
	}
	best := disks[0]
	for _, d := range disks[1:] {
		if d.Size < best.Size {
			best = d
		}
	}
	return best, nil
}

// PartitionDev names partition n of a disk device the way the kernel does:
// /dev/vda → /dev/vda1, /dev/nvme0n1 → /dev/nvme0n1p1.
func PartitionDev(disk string, n int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// waitForDevice waits for devtmpfs to show a partition after a rescan.
func waitForDevice(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", dev, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// withFAT mounts a FAT partition at a fresh folder, runs fn on it and
// unmounts it again (always, so a failed write leaves no mount behind).
func withFAT(dev string, readOnly bool, fn func(dir string) error) (err error) {
	dir, err := os.MkdirTemp("", "testos-fat-")
	if err != nil {
		return fmt.Errorf("while making a mount point: %w", err)
	}
	defer os.Remove(dir)
	var flags uintptr
	if readOnly {
		flags = unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, "vfat", flags, ""); err != nil {
		return fmt.Errorf("while mounting %s (vfat): %w", dev, err)
	}
	defer func() {
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("while unmounting %s: %w", dev, uerr)
		}
	}()
	return fn(dir)
}

// storedConfigPath is where flatcar-install stores the -i config on the
// image's FAT partition, and where the installed system reads it.
const storedConfigPath = "ignition/config.ign"

// StoreConfig writes cfg as /ignition/config.ign on partition 1 of disk
// (the kernel is asked to read the new partition table first).
func StoreConfig(disk string, cfg []byte) error {
	f, err := os.OpenFile(disk, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("while opening %s: %w", disk, err)
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("while rereading the partition table of %s: %w", disk, err)
	}
	part := PartitionDev(disk, 1)
	if err := waitForDevice(part, 10*time.Second); err != nil {
		return err
	}
	return withFAT(part, false, func(dir string) error {
		if err := os.MkdirAll(filepath.Join(dir, "ignition"), 0o755); err != nil {
			return fmt.Errorf("while creating /ignition on %s: %w", part, err)
		}
		path := filepath.Join(dir, storedConfigPath)
		if err := os.WriteFile(path, cfg, 0o644); err != nil {
			return fmt.Errorf("while writing /%s on %s: %w", storedConfigPath, part, err)
		}
		unix.Sync()
		return nil
	})
}

// FindStoredConfig looks for /ignition/config.ign on the first partition of
// each disk (in name order) and answers the first one found with its device.
func FindStoredConfig(sysBlock string) (data []byte, dev string, err error) {
	disks, err := ListDisks(sysBlock)
	if err != nil {
		return nil, "", err
	}
	var tried []string
	for _, d := range disks {
		part := PartitionDev(d.Dev(), 1)
		if _, err := os.Stat(part); err != nil {
			continue
		}
		var found []byte
		err := withFAT(part, true, func(dir string) error {
			b, err := os.ReadFile(filepath.Join(dir, storedConfigPath))
			found = b
			return err
		})
		if err == nil {
			return found, part, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", part, err))
	}
	return nil, "", fmt.Errorf("no disk holds /%s (tried: %s)", storedConfigPath, strings.Join(tried, "; "))
}
