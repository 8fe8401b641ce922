package testos_test

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// vm is one QEMU run with its serial console captured.
type vm struct {
	name    string
	cmd     *exec.Cmd
	start   time.Time
	mu      sync.Mutex
	console bytes.Buffer
	lines   chan string
	exited  chan struct{} // closed when QEMU has exited
	err     error         // QEMU's exit status, once exited is closed
}

func startVM(t *testing.T, name string, args ...string) *vm {
	t.Helper()
	qemu := testenv.RequireCommand(t, "qemu-system-x86_64")
	base := []string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"}
	cmd := exec.Command(qemu, append(base, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	// QEMU dies with the test binary even if the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v := &vm{name: name, cmd: cmd, lines: make(chan string, 4096), exited: make(chan struct{})}
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("while starting QEMU for %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-v.exited
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, v.output())
		}
	})
	go func() {
		buf := make([]byte, 4096)
		var line []byte
		for {
			n, err := out.Read(buf)
			v.mu.Lock()
			v.console.Write(buf[:n])
			v.mu.Unlock()
			for _, b := range buf[:n] {
				if b == '\n' {
					select {
					case v.lines <- strings.TrimRight(string(line), "\r"):
					default:
					}
					line = line[:0]
				} else {
					line = append(line, b)
				}
			}
			if err != nil {
				break
			}
		}
		v.err = cmd.Wait()
		close(v.exited)
		close(v.lines)
	}()
	return v
}

func (v *vm) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// waitLine waits for a console line containing want and answers when it came.
func (v *vm) waitLine(t *testing.T, ctx context.Context, want string) time.Duration {
	t.Helper()
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				t.Fatalf("%s: QEMU exited before the console showed %q", v.name, want)
			}
			if strings.Contains(l, want) {
				return time.Since(v.start)
			}
		case <-ctx.Done():
			t.Fatalf("%s: the console never showed %q", v.name, want)
		}
	}
}

func fillFile(t *testing.T, path string, size int64, b byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{b}, 1<<20)
	if _, err := f.WriteAt(chunk, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(chunk, size-int64(len(chunk))); err != nil {
		t.Fatal(err)
	}
}

func figure(t *testing.T, what string, d time.Duration) {
	t.Logf("figure: %-42s %6.1f s", what, d.Seconds())
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildRelease runs the build script (quick when nothing changed) and
// answers the release folder. RACKER_TESTOS_DIR points at a prebuilt one.
func buildRelease(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RACKER_TESTOS_DIR"); d != "" {
		return filepath.Join(d, "current")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cmd := exec.Command(filepath.Join(root, "scripts/build-testos.sh"), filepath.Join(root, "bin/testos"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-testos.sh: %v\n%s", err, out)
	}
	t.Logf("build-testos.sh (%.1f s): %s", time.Since(t0).Seconds(), strings.TrimSpace(string(out)))
	return filepath.Join(root, "bin/testos/current")
}

// writeOldOS makes a sparse disk image of size holding a previous install
// (the release's image, bunzipped), like a disk that held an OS before.
func writeOldOS(t *testing.T, path string, size int64, image string) {
	t.Helper()
	src, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, bzip2.NewReader(bufio.NewReader(src))); err != nil {
		t.Fatalf("while writing the old OS: %v", err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// overlay makes a qcow2 copy-on-write overlay of base.
func overlay(t *testing.T, base, format, path string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", format, path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
}

// realInstaller says whether the test OS runs Flatcar's own flatcar-install:
// the build takes it from ../shared/peers when it is there (and fails in CI
// when it is not), so the tests expect what the build had.
func realInstaller(t *testing.T) bool {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(root, "../shared/peers/flatcar/flatcar-install"))
	return err == nil
}

// dhcpFrom counts the DHCP client packets (UDP to port 67) sent from mac
// in a pcap capture (QEMU's filter-dump writes classic pcap, Ethernet).
func dhcpFrom(t *testing.T, path, mac string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s is not a little-endian pcap file", path)
	}
	hw, _ := net.ParseMAC(mac)
	n := 0
	for off := 24; off+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		pkt := b[off+16 : min(off+16+incl, len(b))]
		off += 16 + incl
		if len(pkt) < 14+20+8 || !bytes.Equal(pkt[6:12], hw) || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		if binary.BigEndian.Uint16(ip[ihl+2:]) == 67 {
			n++
		}
	}
	return n
}
