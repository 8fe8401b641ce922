package testos

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/racker/racker/internal/testenv"
)

func TestParseInstallArgs(t *testing.T) {
	o, err := ParseInstallArgs([]string{"-d", "/dev/vda", "-i", "/opt/racker/boot.ign", "-b", "http://m:8080/assets/testos/", "-V", "1.2", "-k", "/opt/racker/key.asc"})
	if err != nil || o.ImageURL(o.Version) != "http://m:8080/assets/testos/1.2/flatcar_production_image.bin.bz2" || o.Disk != "/dev/vda" || o.KeyFile != "/opt/racker/key.asc" {
		t.Errorf("got %+v, %v", o, err)
	}
	o, err = ParseInstallArgs([]string{"-s", "-b", "http://m/x", "-k", "k"})
	if err != nil || !o.Smallest || o.Version != "current" {
		t.Errorf("-s: %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"-b", "u", "-k", "k"}, {"-d", "/dev/vda", "-k", "k"}, {"-d", "/dev/vda", "-s", "-b", "u", "-k", "k"}, {"-d"},
		{"-C", "stable", "-s", "-b", "u", "-k", "k"}, {"-d", "/dev/vda", "-b", "u"}} {
		if _, err := ParseInstallArgs(bad); err == nil {
			t.Errorf("ParseInstallArgs(%q) accepted it", bad)
		}
	}
}

// fakeSysBlock is a unit-test fake of /sys/block: sizes in sectors as the
// kernel shows them.
func fakeSysBlock(t *testing.T, disks map[string]string) string {
	dir := t.TempDir()
	for name, size := range disks {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "size"), []byte(size+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, name, "ro"), []byte("0\n"), 0o644)
	}
	return dir
}

const gib = 2097152 // sectors

func TestListAndPickDisks(t *testing.T) {
	sys := fakeSysBlock(t, map[string]string{"vda": "8388608" /* 4 GiB */, "vdb": "83886080" /* 40 GiB */, "vdc": "41943040",
		"nvme0n1": "1048576000" /* 500 GiB */, "loop0": "100", "sr0": "2048", "vdd": "0", "nvme0": "5"})
	os.WriteFile(filepath.Join(sys, "vdc", "ro"), []byte("1\n"), 0o644) // 20 GiB, read-only
	os.MkdirAll(filepath.Join(sys, "sdz"), 0o755)
	os.WriteFile(filepath.Join(sys, "sdz", "size"), []byte("41943040\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "sdz", "removable"), []byte("1\n"), 0o644) // a USB stick
	disks, err := ListDisks(sys, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "nvme0n1,vda,vdb" {
		t.Errorf("disks = %s, want nvme0n1,vda,vdb (no loop/sr/read-only/removable/empty/controller)", got)
	}
	// Flatcar's -s: the 4 GiB disk is under 10 GB; the 40 GiB one is the smallest over it.
	d, err := SmallestDisk(disks)
	if err != nil || d.Dev() != "/dev/vdb" || d.Size != 40*gib*512 {
		t.Errorf("smallest = %+v, %v", d, err)
	}
	// A mounted partition or a device-mapper holder puts a disk out of reach.
	os.MkdirAll(filepath.Join(sys, "vdb", "vdb1"), 0o755)
	disks, _ = ListDisks(sys, []string{"/dev/vdb1 /mnt ext4 rw 0 0"})
	if d, err := SmallestDisk(disks); err != nil || d.Name != "nvme0n1" {
		t.Errorf("with vdb mounted: %+v, %v", d, err)
	}
	os.MkdirAll(filepath.Join(sys, "nvme0n1", "holders", "dm-0"), 0o755)
	disks, _ = ListDisks(sys, []string{"/dev/vdb1 /mnt ext4 rw 0 0"})
	if _, err := SmallestDisk(disks); err == nil || !strings.Contains(err.Error(), "min. 10GB") ||
		!strings.Contains(err.Error(), "vda: 4294967296 bytes") || !strings.Contains(err.Error(), "vdb: vdb1 is mounted") ||
		!strings.Contains(err.Error(), "dm-0") {
		t.Errorf("no eligible disk: %v", err)
	}
	if PartitionDev("/dev/vda", 1) != "/dev/vda1" || PartitionDev("/dev/nvme0n1", 1) != "/dev/nvme0n1p1" {
		t.Error("PartitionDev")
	}
}

func TestPartitionsByGPTName(t *testing.T) {
	sys := fakeSysBlock(t, map[string]string{"vda": "100"})
	for n, label := range map[string]string{"1": "EFI-SYSTEM", "6": "OEM", "9": "ROOT"} {
		os.MkdirAll(filepath.Join(sys, "vda", "vda"+n), 0o755)
		os.WriteFile(filepath.Join(sys, "vda", "vda"+n, "uevent"), []byte("MAJOR=254\nDEVNAME=vda"+n+"\nDEVTYPE=partition\nPARTN="+n+"\nPARTNAME="+label+"\n"), 0o644)
	}
	parts, err := Partitions(sys, "vda")
	if err != nil || len(parts) != 3 || parts[0].Label != "EFI-SYSTEM" || parts[2].Number != 9 {
		t.Fatalf("partitions %+v, %v", parts, err)
	}
	if p, ok := partitionByLabel(parts, "OEM"); !ok || p.Dev != "/dev/vda6" {
		t.Errorf("OEM = %+v", p)
	}
}

// signer is a test OpenPGP key (unit-test fake for the release's signing key).
type signer struct {
	e       *openpgp.Entity
	keyFile string
}

func newSigner(t *testing.T) signer {
	t.Helper()
	e, err := openpgp.NewEntity("test release", "", "t@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	path := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(path, buf.Bytes(), 0o644)
	return signer{e, path}
}

func (s signer) sign(t *testing.T, data []byte) []byte {
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, s.e, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	return sig.Bytes()
}

// TestInstallerWritesImage serves a real bzip2'd disk image and its
// signature over loopback HTTP and installs it to a disk image file;
// storing the config (an ext4 mount on the node) is a recording fake here,
// the QEMU test covers it.
func TestInstallerWritesImage(t *testing.T) {
	bz := testenv.RequireCommand(t, "bzip2")
	compress := func(b []byte) []byte {
		c := exec.Command(bz, "-c")
		c.Stdin = bytes.NewReader(b)
		out, err := c.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	img := bytes.Repeat([]byte("testos!\n"), 3<<17) // 3 MiB
	img[510], img[511] = 0x55, 0xaa
	good := newSigner(t)
	other := newSigner(t)
	files := map[string][]byte{}
	release := func(version string, image, sig []byte) {
		files["/assets/testos/"+version+"/"+ImageFile] = image
		if sig != nil {
			files["/assets/testos/"+version+"/"+ImageFile+".sig"] = sig
		}
	}
	compressed := compress(img)
	release("testos-1", compressed, good.sign(t, compressed))
	files["/assets/testos/current/version.txt"] = []byte("FLATCAR_BUILD=0\nFLATCAR_VERSION=testos-1\n")
	notDisk := compress([]byte(strings.Repeat("not a disk", 100)))
	release("bad", notDisk, good.sign(t, notDisk))
	release("unsigned", compressed, nil)
	release("wrongkey", compressed, other.sign(t, compressed))
	tampered := bytes.Clone(compressed)
	tampered[len(tampered)-1] ^= 1 // the stream's CRC: bzip2 only notices at the end
	release("tampered", tampered, good.sign(t, compressed))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()

	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	ign := filepath.Join(dir, "boot.ign")
	os.WriteFile(ign, []byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"http://m/ignition?mac=x&phase=boot"}}}}`), 0o644)
	var stored []byte
	var said []string
	in := Installer{
		Client:      srv.Client(),
		StoreConfig: func(d string, cfg []byte) error { stored = cfg; return nil },
		Say:         func(s string) { said = append(said, s) },
	}
	o := InstallOptions{Disk: disk, Ignition: ign, BaseURL: srv.URL + "/assets/testos", Version: "current", KeyFile: good.keyFile}
	os.WriteFile(disk, bytes.Repeat([]byte{0xee}, 8<<20), 0o600)
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
	if last := said[len(said)-1]; last != "Success! Flatcar Container Linux (test OS stand-in) testos-1 is installed on "+disk {
		t.Errorf("console lines %q", said)
	}

	for _, tc := range []struct{ version, key, want string }{
		{"bad", good.keyFile, "not a disk image"},
		{"missing", good.keyFile, "HTTP 404"},
		{"unsigned", good.keyFile, "image signature unavailable"},
		{"wrongkey", good.keyFile, "signature verification failed"},
		{"tampered", good.keyFile, "tampered"},
	} {
		os.WriteFile(disk, bytes.Repeat([]byte{0xee}, 8<<20), 0o600)
		o := o
		o.Version, o.KeyFile = tc.version, tc.key
		err := in.Install(context.Background(), o)
		if err == nil || (!strings.Contains(err.Error(), tc.want) && tc.want != "tampered") {
			t.Errorf("%s: %v, want an error with %q", tc.version, err, tc.want)
		}
		if b, _ := os.ReadFile(disk); !bytes.Equal(b[:1<<20], bytes.Repeat([]byte{0xee}, 1<<20)) && !bytes.Equal(b[:1<<20], make([]byte, 1<<20)) {
			t.Errorf("%s: the disk's start holds an image that failed (neither untouched nor wiped)", tc.version)
		}
	}
	os.WriteFile(ign, []byte(`{"ignition":{"version":"1.0.0"}}`), 0o644)
	if err := in.Install(context.Background(), o); err == nil {
		t.Error("a -i config of a version Ignition does not read was accepted")
	}
}

// Lokomotive's installer runs flatcar-install without -k; the test OS then
// verifies with its own image key, and never overrides a -k that is given.
func TestDefaultImageKey(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.asc")
	if got := DefaultImageKey([]string{"-d", "/dev/vda"}, key); got != nil {
		t.Errorf("without the key file: %v, want nothing", got)
	}
	if err := os.WriteFile(key, []byte("key"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-d", "/dev/vda", "-C", "stable", "-V", "1.2.3", "-o", "", "-b", "http://m/assets/flatcar"},
		{"-s", "-dk"}, // -d's value is "k"
	} {
		if got := DefaultImageKey(args, key); len(got) != 2 || got[0] != "-k" || got[1] != key {
			t.Errorf("DefaultImageKey(%q) = %v, want -k %s", args, got, key)
		}
	}
	for _, args := range [][]string{
		{"-d", "/dev/vda", "-k", "/tmp/other.asc"},
		{"-d", "/dev/vda", "-k/tmp/other.asc"},
		{"-yk", "/tmp/other.asc"},
	} {
		if got := DefaultImageKey(args, key); got != nil {
			t.Errorf("DefaultImageKey(%q) = %v, want the given -k kept", args, got)
		}
	}
}
