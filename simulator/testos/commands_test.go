package testos

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestWipefsZeroesBothEnds(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "disk")
	size := 5 << 20
	os.WriteFile(dev, bytes.Repeat([]byte{0xaa}, size), 0o600)
	var out, errb bytes.Buffer
	if code := Wipefs([]string{"-a", dev}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, _ := os.ReadFile(dev)
	zero := make([]byte, wipeSpan)
	if !bytes.Equal(b[:wipeSpan], zero) || !bytes.Equal(b[size-wipeSpan:], zero) {
		t.Error("first or last MiB not zeroed")
	}
	if !bytes.Equal(b[wipeSpan:size-wipeSpan], bytes.Repeat([]byte{0xaa}, size-2*wipeSpan)) {
		t.Error("the middle of the disk was touched")
	}
	small := filepath.Join(t.TempDir(), "small")
	os.WriteFile(small, bytes.Repeat([]byte{1}, 4096), 0o600)
	if code := Wipefs([]string{"--all", "-f", small}, &out, &errb); code != 0 {
		t.Errorf("a device smaller than a MiB: exit %d", code)
	}
	if b, _ := os.ReadFile(small); len(b) != 4096 || !bytes.Equal(b, make([]byte, 4096)) {
		t.Error("a small device was not zeroed in place")
	}
	for _, args := range [][]string{{dev}, {"-a"}, {"-n", dev}} {
		if code := Wipefs(args, &out, &errb); code != 2 {
			t.Errorf("wipefs %q: exit %d, want 2", args, code)
		}
	}
	if code := Wipefs([]string{"-a", filepath.Join(t.TempDir(), "missing")}, &out, &errb); code != 1 {
		t.Errorf("missing device: exit %d, want 1", code)
	}
}

func TestSystemctl(t *testing.T) {
	var got []int
	act := func(cmd int) error { got = append(got, cmd); return nil }
	var out, errb bytes.Buffer
	for _, args := range [][]string{{"reboot"}, {"--no-block", "poweroff"}, {"daemon-reload"}} {
		if code := Systemctl(args, &out, &errb, act); code != 0 {
			t.Errorf("systemctl %q: exit %d", args, code)
		}
	}
	if len(got) != 2 || got[0] != unix.LINUX_REBOOT_CMD_RESTART || got[1] != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Errorf("actions = %#x", got)
	}
	if code := Systemctl([]string{"start", "x.service"}, &out, &errb, act); code != 1 || len(got) != 2 {
		t.Errorf("unsupported verb: exit %d", code)
	}
	if code := Systemctl([]string{"reboot"}, &out, &errb, func(int) error { return errors.New("EPERM") }); code != 1 {
		t.Errorf("a failing reboot: exit %d", code)
	}
}

func TestParseInstallArgs(t *testing.T) {
	o, err := ParseInstallArgs([]string{"-d", "/dev/vda", "-i", "/opt/racker/boot.ign", "-b", "http://m:8080/assets/testos/", "-V", "1.2"})
	if err != nil || o.ImageURL() != "http://m:8080/assets/testos/1.2/flatcar_production_image.bin.bz2" || o.Disk != "/dev/vda" {
		t.Errorf("got %+v (%s), %v", o, o.ImageURL(), err)
	}
	o, err = ParseInstallArgs([]string{"-s", "-b", "http://m/x"})
	if err != nil || !o.Smallest || o.Version != "current" {
		t.Errorf("-s: %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"-b", "u"}, {"-d", "/dev/vda"}, {"-d", "/dev/vda", "-s", "-b", "u"}, {"-d"}, {"-C", "stable", "-s", "-b", "u"}} {
		if _, err := ParseInstallArgs(bad); err == nil {
			t.Errorf("ParseInstallArgs(%q) accepted it", bad)
		}
	}
}

func fakeSysBlock(t *testing.T, disks map[string]string) string {
	dir := t.TempDir()
	for name, size := range disks {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "size"), []byte(size+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, name, "ro"), []byte("0\n"), 0o644)
	}
	return dir
}

func TestListAndPickDisks(t *testing.T) {
	// A fake /sys/block tree (unit test): names and sizes as the kernel shows them.
	sys := fakeSysBlock(t, map[string]string{"vda": "4194304", "vdb": "2097152", "nvme0n1": "2097152", "loop0": "100", "sr0": "2048", "vdc": "0", "nvme0": "5"})
	os.WriteFile(filepath.Join(sys, "vdb", "ro"), []byte("1\n"), 0o644)
	os.MkdirAll(filepath.Join(sys, "sdz"), 0o755)
	os.WriteFile(filepath.Join(sys, "sdz", "size"), []byte("1024\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "sdz", "removable"), []byte("1\n"), 0o644) // a USB stick
	disks, err := ListDisks(sys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "nvme0n1,vda" {
		t.Errorf("disks = %s, want nvme0n1,vda (no loop/sr/read-only/removable/empty/controller)", got)
	}
	d, err := SmallestDisk(disks)
	if err != nil || d.Dev() != "/dev/nvme0n1" || d.Size != 2097152*512 {
		t.Errorf("smallest = %+v, %v", d, err)
	}
	if _, err := SmallestDisk(nil); err == nil {
		t.Error("no disks: no error")
	}
	if PartitionDev("/dev/vda", 1) != "/dev/vda1" || PartitionDev("/dev/nvme0n1", 1) != "/dev/nvme0n1p1" {
		t.Error("PartitionDev")
	}
}

// TestInstallerWritesImage serves a real bzip2'd disk image over loopback
// HTTP and installs it to a disk image file; storing the config (a FAT
// mount on the node) is a recording fake here, the QEMU test covers it.
func TestInstallerWritesImage(t *testing.T) {
	bz := testenv.RequireCommand(t, "bzip2")
	img := bytes.Repeat([]byte("testos!\n"), 3<<17) // 3 MiB
	img[510], img[511] = 0x55, 0xaa
	c := exec.Command(bz, "-c")
	c.Stdin = bytes.NewReader(img)
	compressed, err := c.Output()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/assets/testos/current/"+ImageFile, func(w http.ResponseWriter, r *http.Request) { w.Write(compressed) })
	mux.HandleFunc("/assets/testos/bad/"+ImageFile, func(w http.ResponseWriter, r *http.Request) {
		c := exec.Command(bz, "-c")
		c.Stdin = strings.NewReader(strings.Repeat("not a disk", 100))
		b, _ := c.Output()
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	os.WriteFile(disk, bytes.Repeat([]byte{0xee}, 8<<20), 0o600)
	ign := filepath.Join(dir, "boot.ign")
	os.WriteFile(ign, []byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"http://m/ignition?mac=x&phase=boot"}}}}`), 0o644)
	var stored []byte
	var said []string
	in := Installer{
		Client:      srv.Client(),
		StoreConfig: func(d string, cfg []byte) error { stored = cfg; return nil },
		Say:         func(s string) { said = append(said, s) },
	}
	o := InstallOptions{Disk: disk, Ignition: ign, BaseURL: srv.URL + "/assets/testos", Version: "current"}
	if err := in.Install(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got[:len(img)], img) || got[len(img)] != 0xee || len(got) != 8<<20 {
		t.Error("the disk does not hold the image followed by the old contents")
	}
	if want, _ := os.ReadFile(ign); !bytes.Equal(stored, want) {
		t.Errorf("stored config %q", stored)
	}
	if len(said) != 3 || !strings.Contains(said[1], "wrote 3 MiB") {
		t.Errorf("console lines %q", said)
	}

	o.Version = "bad"
	if err := in.Install(context.Background(), o); err == nil || !strings.Contains(err.Error(), "not a disk image") {
		t.Errorf("a non-image: %v", err)
	}
	o.Version = "missing"
	if err := in.Install(context.Background(), o); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("a missing image: %v", err)
	}
	os.WriteFile(ign, []byte(`{"ignition":{"version":"2.2.0"}}`), 0o644)
	o.Version = "current"
	if err := in.Install(context.Background(), o); err == nil {
		t.Error("a spec 2 -i config was accepted")
	}
}
