package testos

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seedEntropy credits the kernel's random pool so getrandom(2) stops
// blocking. Under QEMU's TCG without a virtio-rng device or RDRAND, the
// kernel may not finish initialising its CRNG for minutes, and Go's
// crypto/rand (the DHCP transaction ID, for one) blocks until it has.
//
// The seed hashes boot-time noise (clock, interrupt counts, MACs, the
// command line): not secret. That is acceptable only because this is a test
// OS that makes no keys and speaks plain HTTP; a real OS must not do this.
func seedEntropy() error {
	h := sha512.New()
	var ts [8]byte
	binary.LittleEndian.PutUint64(ts[:], uint64(time.Now().UnixNano()))
	h.Write(ts[:])
	for _, p := range []string{"/proc/interrupts", "/proc/meminfo", "/proc/stat", "/proc/cmdline"} {
		b, _ := os.ReadFile(p)
		h.Write(b)
	}
	macs, _ := filepath.Glob("/sys/class/net/*/address")
	for _, p := range macs {
		b, _ := os.ReadFile(p)
		h.Write(b)
	}
	seed := h.Sum(nil)
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(seed))
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(seed)*8))
	binary.LittleEndian.PutUint32(buf[4:], uint32(len(seed)))
	copy(buf[8:], seed)
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("while opening /dev/urandom: %w", err)
	}
	defer f.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}
