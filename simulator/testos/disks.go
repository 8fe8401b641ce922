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

// MinInstallSize is flatcar-install -s's lower bound: it only considers
// disks larger than 10,000,000,000 bytes ("min. 10GB").
const MinInstallSize = 10_000_000_000

// Disk is a whole disk as the kernel lists it under /sys/block.
type Disk struct {
	Name string // vda, sdb, nvme0n1
	Size int64  // bytes
	// InUse says why the disk cannot be installed to (a mounted partition,
	// a device-mapper holder), as flatcar-install -s judges it; "" if free.
	InUse string
}

// Dev is the disk's device node.
func (d Disk) Dev() string { return "/dev/" + d.Name }

// ListDisks lists the disks under sysBlock (normally /sys/block) that an
// install can target: sd*, vd*, xvd* and nvme*n*, not read-only, not
// removable, not empty, sorted by name; mounts (from /proc/self/mounts
// lines) and holders mark a disk in use. The same patterns as Racker's
// install script.
func ListDisks(sysBlock string, mounts []string) ([]Disk, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("while listing disks in %s: %w", sysBlock, err)
	}
	mounted := map[string]bool{}
	for _, l := range mounts {
		if f := strings.Fields(l); len(f) > 0 {
			mounted[strings.TrimPrefix(f[0], "/dev/")] = true
		}
	}
	var disks []Disk
	for _, e := range entries {
		name := e.Name()
		if !isDiskName(name) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		if ro, _ := readInt(filepath.Join(dir, "ro")); ro != 0 {
			continue
		}
		if rm, _ := readInt(filepath.Join(dir, "removable")); rm != 0 {
			continue
		}
		sectors, err := readInt(filepath.Join(dir, "size"))
		if err != nil || sectors == 0 {
			continue
		}
		d := Disk{Name: name, Size: sectors * 512}
		for _, dev := range append([]string{name}, partitionNames(dir, name)...) {
			holderDir := filepath.Join(sysBlock, name, "holders")
			if dev != name {
				holderDir = filepath.Join(dir, dev, "holders")
			}
			if holders, _ := os.ReadDir(holderDir); len(holders) > 0 {
				d.InUse = fmt.Sprintf("%s is used by %s", dev, holders[0].Name())
			}
			if mounted[dev] {
				d.InUse = fmt.Sprintf("%s is mounted", dev)
			}
		}
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// partitionNames lists a disk's partitions (the folders under its sysfs
// folder named after it, e.g. vda1, nvme0n1p2).
func partitionNames(dir, disk string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), disk) && e.Name() != disk {
			out = append(out, e.Name())
		}
	}
	return out
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

// SmallestDisk picks flatcar-install -s's disk: the smallest one larger
// than MinInstallSize that is not in use (ties by name). Its error lists the
// disks and why each was passed over, since "no disk" on a rack is always
// a surprise.
func SmallestDisk(disks []Disk) (Disk, error) {
	var best *Disk
	var passed []string
	for i, d := range disks {
		switch {
		case d.Size <= MinInstallSize:
			passed = append(passed, fmt.Sprintf("%s: %d bytes", d.Name, d.Size))
		case d.InUse != "":
			passed = append(passed, fmt.Sprintf("%s: %s", d.Name, d.InUse))
		case best == nil || d.Size < best.Size:
			best = &disks[i]
		}
	}
	if best == nil {
		return Disk{}, fmt.Errorf("could not find smallest disk to install (min. 10GB): no unused disk over %d bytes (%s)",
			int64(MinInstallSize), strings.Join(append(passed, ""), "; ")+"that is all")
	}
	return *best, nil
}

// Partition is a partition of a disk with its GPT name (PARTNAME), which
// the kernel reads from the partition table.
type Partition struct {
	Dev    string // /dev/vda6
	Number int
	Label  string // GPT partition name, e.g. "OEM"
}

// Partitions lists a disk's partitions from sysfs (sysBlock/DISK/PART/uevent).
func Partitions(sysBlock, disk string) ([]Partition, error) {
	dir := filepath.Join(sysBlock, disk)
	var out []Partition
	for _, name := range partitionNames(dir, disk) {
		b, err := os.ReadFile(filepath.Join(dir, name, "uevent"))
		if err != nil {
			return nil, fmt.Errorf("while reading the partitions of %s: %w", disk, err)
		}
		p := Partition{Dev: "/dev/" + name}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, "=")
			switch k {
			case "PARTN":
				p.Number, _ = strconv.Atoi(v)
			case "PARTNAME":
				p.Label = v
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// partitionByLabel finds the partition of a disk with a GPT name.
func partitionByLabel(parts []Partition, label string) (Partition, bool) {
	for _, p := range parts {
		if p.Label == label {
			return p, true
		}
	}
	return Partition{}, false
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

// withMount mounts a filesystem at a fresh folder, runs fn on it and
// unmounts it again (always, so a failed write leaves no mount behind).
func withMount(dev, fstype string, readOnly bool, fn func(dir string) error) (err error) {
	dir, err := os.MkdirTemp("", "testos-mnt-")
	if err != nil {
		return fmt.Errorf("while making a mount point: %w", err)
	}
	defer os.Remove(dir)
	var flags uintptr
	if readOnly {
		flags = unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, fstype, flags, ""); err != nil {
		return fmt.Errorf("while mounting %s (%s): %w", dev, fstype, err)
	}
	defer func() {
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("while unmounting %s: %w", dev, uerr)
		}
	}()
	return fn(dir)
}

// rereadPartitions asks the kernel to read a disk's partition table again
// (BLKRRPART), as flatcar-install's blockdev --rereadpt does.
func rereadPartitions(disk string) error {
	f, err := os.OpenFile(disk, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("while opening %s: %w", disk, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("while rereading the partition table of %s: %w", disk, err)
	}
	return nil
}
