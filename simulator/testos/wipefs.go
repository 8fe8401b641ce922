package testos

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// wipeSpan is how much wipefs zeroes at each end of a device: enough for
// MBR/GPT (and the backup GPT at the end), filesystem superblocks and the
// test OS's own image header.
const wipeSpan = 1 << 20

// Wipefs implements "wipefs -a [-f] DEV…": it zeroes the first and last MiB
// of each device so no old partition table or filesystem is found again (the
// reprovision contract: an old OS on another disk must not win the next boot).
func Wipefs(args []string, stdout, stderr io.Writer) int {
	all := false
	var devs []string
	for _, a := range args {
		switch {
		case a == "-a" || a == "--all" || a == "-af" || a == "-fa":
			all = true
		case a == "-f" || a == "--force":
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(stderr, "wipefs: option %s is not supported by the test OS\n", a)
			return 2
		default:
			devs = append(devs, a)
		}
	}
	if !all || len(devs) == 0 {
		fmt.Fprintln(stderr, "wipefs: usage: wipefs -a DEVICE...")
		return 2
	}
	for _, dev := range devs {
		if err := wipeDevice(dev); err != nil {
			fmt.Fprintf(stderr, "wipefs: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wipefs: %s: zeroed the first and last MiB\n", dev)
	}
	return 0
}

func wipeDevice(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("while opening %s: %w", dev, err)
	}
	defer f.Close()
	size, err := deviceSize(f)
	if err != nil {
		return fmt.Errorf("while sizing %s: %w", dev, err)
	}
	zero := make([]byte, wipeSpan)
	spans := []int64{0}
	if size > wipeSpan {
		spans = append(spans, size-wipeSpan)
	}
	for _, off := range spans {
		n := int64(wipeSpan)
		if off+n > size {
			n = size - off
		}
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("while zeroing %s at %d: %w", dev, off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("while syncing %s: %w", dev, err)
	}
	rereadPartitions(f)
	return nil
}

// deviceSize answers the size of a block device (BLKGETSIZE64) or a regular
// file (tests use image files as disks).
func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	var size uint64
	if err := ioctlPtr(f, unix.BLKGETSIZE64, &size); err != nil {
		return 0, fmt.Errorf("BLKGETSIZE64: %w", err)
	}
	return int64(size), nil
}

// rereadPartitions asks the kernel to read the partition table again
// (best effort: a regular file has none, and a busy disk refuses).
func rereadPartitions(f *os.File) {
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	}
}
