package ignition

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNode is a unit-test fake of what install.sh reads on a node: a
// /sys/block tree, /dev (regular files and by-id/by-path symlinks),
// /proc/mounts, and stub commands that only record their arguments
// (flatcar-install, wipefs, curl, systemctl, sleep). PATH holds nothing but
// the stubs and cat, ls, readlink, so no real wipefs can ever be reached.
type fakeNode struct {
	t                  *testing.T
	dir, sys, dev, log string
}

const gib = 1 << 30

func newFakeNode(t *testing.T) *fakeNode {
	dir := t.TempDir()
	n := &fakeNode{t: t, dir: dir, sys: filepath.Join(dir, "sys"), dev: filepath.Join(dir, "dev"), log: filepath.Join(dir, "log")}
	for _, d := range []string{filepath.Join(n.sys, "block"), n.dev, filepath.Join(dir, "proc"), filepath.Join(dir, "bin")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(dir, "proc", "mounts"), []byte("proc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n"), 0o644)
	for _, c := range []string{"flatcar-install", "wipefs", "curl", "systemctl", "sleep"} {
		os.WriteFile(filepath.Join(dir, "bin", c), []byte("#!/bin/sh\necho \""+c+" $*\" >> "+n.log+"\n"), 0o755)
	}
	for _, c := range []string{"cat", "ls", "readlink"} {
		p, err := exec.LookPath(c)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(dir, "bin", c))
	}
	return n
}

// disk adds a whole disk of size bytes with partitions parts (names).
func (n *fakeNode) disk(name string, size int64, parts ...string) {
	d := filepath.Join(n.sys, "block", name)
	os.MkdirAll(filepath.Join(d, "holders"), 0o755)
	os.WriteFile(filepath.Join(d, "size"), []byte(fmt.Sprintf("%d\n", size/512)), 0o644)
	os.WriteFile(filepath.Join(d, "removable"), []byte("0\n"), 0o644)
	os.WriteFile(filepath.Join(d, "ro"), []byte("0\n"), 0o644)
	os.WriteFile(filepath.Join(n.dev, name), nil, 0o600)
	for _, p := range parts {
		os.MkdirAll(filepath.Join(d, p, "holders"), 0o755)
		os.WriteFile(filepath.Join(n.dev, p), nil, 0o600)
	}
}

func (n *fakeNode) set(name, file, value string) {
	os.WriteFile(filepath.Join(n.sys, "block", name, file), []byte(value+"\n"), 0o644)
}

// link adds /dev/disk/KIND/NAME → ../../DISK, as udev makes them.
func (n *fakeNode) link(kind, name, disk string) {
	os.MkdirAll(filepath.Join(n.dev, "disk", kind), 0o755)
	os.Symlink("../../"+disk, filepath.Join(n.dev, "disk", kind, name))
}

func (n *fakeNode) mount(dev string) {
	f, _ := os.OpenFile(filepath.Join(n.dir, "proc", "mounts"), os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "/dev/%s /mnt ext4 rw 0 0\n", dev)
	f.Close()
}

// run runs install.sh with shell and answers the recorded calls (fake
// paths shown as /dev) and whether it exited 0.
func (n *fakeNode) run(shell []string, p InstallParams) (calls []string, ok bool, out string) {
	n.t.Helper()
	p.MAC, p.BaseURL, p.OS, p.Version, p.SigningKey, p.Token = testMAC, testBase, "testos", "testos-1", testKey, testToken
	p, err := p.check()
	if err != nil {
		n.t.Fatal(err)
	}
	key := filepath.Join(n.dir, "key.asc")
	os.WriteFile(key, testKey, 0o644)
	os.Remove(n.log)
	script := installScript(p)
	for from, to := range map[string]string{"\nSYS=/sys\n": "\nSYS=" + n.sys + "\n", "\nDEV=/dev\n": "\nDEV=" + n.dev + "\n",
		"\nPROC=/proc\n": "\nPROC=" + filepath.Join(n.dir, "proc") + "\n", "\nKEY='" + SigningKeyPath + "'\n": "\nKEY='" + key + "'\n"} {
		if !strings.Contains(script, from) {
			n.t.Fatalf("install.sh has no line %q to point at the fake node", from)
		}
		script = strings.Replace(script, from, to, 1)
	}
	cmd := exec.Command(shell[0], append(shell[1:], "-c", script)...)
	cmd.Env = []string{"PATH=" + filepath.Join(n.dir, "bin")}
	b, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(n.log)
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if l != "" {
			calls = append(calls, strings.ReplaceAll(strings.ReplaceAll(l, n.dev, "/dev"), key, SigningKeyPath))
		}
	}
	return calls, err == nil, string(b)
}

// shells are the /bin/sh of each OS that runs install.sh: dash (Debian),
// bash (Flatcar), busybox ash (the test OS), where installed.
func shells(t *testing.T) [][]string {
	var out [][]string
	for _, s := range [][]string{{"/bin/sh"}, {"bash", "--posix"}, {"busybox", "sh"}} {
		if p, err := exec.LookPath(s[0]); err == nil {
			out = append(out, append([]string{p}, s[1:]...))
		}
	}
	if len(out) == 0 {
		t.Fatal("no shell to run install.sh")
	}
	return out
}

func callsWith(calls []string, prefix string) []string {
	var out []string
	for _, c := range calls {
		if rest, ok := strings.CutPrefix(c, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// The install disk is the same on the first install and on reprovision:
// with a 4 GiB and a 40 GiB disk, the 40 GiB one both times, and
// reprovision wipes the 4 GiB one (partitions first).
func TestInstallScriptOneDiskRule(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh[0]), func(t *testing.T) {
			n := newFakeNode(t)
			n.disk("vda", 4*gib, "vda1", "vda9") // an old OS on the small disk
			n.disk("vdb", 40*gib, "vdb1", "vdb9")
			n.disk("sr0", 40*gib) // not a disk name the script takes
			n.disk("sdz", 64*gib) // a USB stick
			n.set("sdz", "removable", "1")
			for _, wipe := range []bool{false, true} {
				calls, ok, out := n.run(sh, InstallParams{WipeAll: wipe})
				if !ok {
					t.Fatalf("wipe=%v: install.sh failed:\n%s", wipe, out)
				}
				if got := callsWith(calls, "flatcar-install "); len(got) != 1 || got[0] != "-d /dev/vdb -i /opt/racker/boot.ign -b "+testBase+"/assets/testos -V testos-1 -k "+SigningKeyPath {
					t.Errorf("wipe=%v: flatcar-install %q", wipe, got)
				}
				want := ""
				if wipe {
					want = "-a /dev/vda1,-a /dev/vda9,-a /dev/vda"
				}
				if got := strings.Join(callsWith(calls, "wipefs "), ","); got != want {
					t.Errorf("wipe=%v: wipefs %q, want %q", wipe, got, want)
				}
				if !strings.Contains(calls[0], `"event":"installing"`) || !strings.Contains(calls[len(calls)-2], `"event":"installed"`) || calls[len(calls)-1] != "systemctl reboot" {
					t.Errorf("wipe=%v: call order:\n%s", wipe, strings.Join(calls, "\n"))
				}
				if !strings.Contains(out, "racker-install: installing to /dev/vdb (42949672960 bytes): the smallest unused disk over 10000000000 bytes") {
					t.Errorf("wipe=%v: the console does not say which disk and why:\n%s", wipe, out)
				}
			}
		})
	}
}

func TestInstallScriptDiskChoices(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(n *fakeNode)
		rule  string
		want  string // flatcar-install's -d, or "fail: MESSAGE PART"
	}{
		{"ties go to the first name", func(n *fakeNode) { n.disk("vda", 20*gib); n.disk("sda", 20*gib); n.disk("sdb", 30*gib) }, "", "/dev/sda"},
		{"exactly 10 GB is not over 10 GB", func(n *fakeNode) { n.disk("vda", 10_000_000_000); n.disk("vdb", 10_000_000_512) }, "", "/dev/vdb"},
		{"a read-only disk is skipped", func(n *fakeNode) { n.disk("vda", 20*gib); n.set("vda", "ro", "1"); n.disk("vdb", 30*gib) }, "", "/dev/vdb"},
		{"a mounted disk is skipped", func(n *fakeNode) {
			n.disk("vda", 20*gib, "vda1")
			n.mount("vda1")
			n.disk("vdb", 30*gib)
		}, "", "/dev/vdb"},
		{"a held disk is skipped", func(n *fakeNode) {
			n.disk("nvme0n1", 20*gib, "nvme0n1p1")
			os.MkdirAll(filepath.Join(n.sys, "block", "nvme0n1", "nvme0n1p1", "holders", "dm-0"), 0o755)
			n.disk("nvme1n1", 30*gib)
		}, "", "/dev/nvme1n1"},
		{"by size", func(n *fakeNode) { n.disk("vda", 40*gib); n.disk("vdb", 500_107_862_016); n.disk("vdc", 1000*gib) }, ">=480GB", "/dev/vdb"},
		{"by id, a glob shared by a type", func(n *fakeNode) {
			n.disk("vda", 40*gib)
			n.disk("vdb", 400*gib)
			n.link("by-id", "virtio-SSD_S64ANS0T123456", "vdb")
			n.link("by-id", "virtio-HDD_Z1234", "vda")
		}, "/dev/disk/by-id/virtio-SSD_*", "/dev/vdb"},
		{"by path", func(n *fakeNode) {
			n.disk("vda", 40*gib)
			n.disk("vdb", 40*gib)
			n.link("by-path", "pci-0000:00:05.0", "vdb")
		}, "/dev/disk/by-path/pci-0000:00:05.0", "/dev/vdb"},
		{"a kernel name", func(n *fakeNode) { n.disk("vda", 4*gib); n.disk("vdb", 40*gib) }, "/dev/vda", "/dev/vda"},
		{"no eligible disk", func(n *fakeNode) { n.disk("vda", 4*gib, "vda1"); n.disk("vdb", 8*gib) },
			"", "fail: no install disk: none is the smallest unused disk over 10000000000 bytes (the Flatcar rule); disks (bytes): vda=4294967296 vdb=8589934592"},
		{"no disk at all", func(n *fakeNode) {}, "", "fail: disks (bytes): none"},
		{"the only big disk is mounted", func(n *fakeNode) { n.disk("vda", 40*gib, "vda1"); n.mount("vda1") },
			"", "fail: disks (bytes): vda=42949672960 (vda1 is mounted)"},
		{"by id, no match", func(n *fakeNode) { n.disk("vda", 40*gib) }, "/dev/disk/by-id/virtio-SSD_*", "fail: install disk /dev/disk/by-id/virtio-SSD_*: no such device"},
		{"by id, two matches", func(n *fakeNode) {
			n.disk("vda", 40*gib)
			n.disk("vdb", 40*gib)
			n.link("by-id", "virtio-SSD_1", "vda")
			n.link("by-id", "virtio-SSD_2", "vdb")
		}, "/dev/disk/by-id/virtio-SSD_*", "fail: matches 2 devices"},
		{"a partition is not a disk", func(n *fakeNode) { n.disk("vda", 40*gib, "vda1"); n.link("by-id", "virtio-X-part1", "vda1") },
			"/dev/disk/by-id/virtio-X-part1", "fail: is /dev/vda1, which is not a whole fixed disk"},
		{"by size, none big enough", func(n *fakeNode) { n.disk("vda", 40*gib) }, ">=1TB",
			"fail: none is the smallest unused disk of at least 1000000000000 bytes (node type setting); disks (bytes): vda=42949672960"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, sh := range shells(t) {
				n := newFakeNode(t)
				tc.setup(n)
				calls, ok, out := n.run(sh, InstallParams{WipeAll: true, Disk: tc.rule})
				installs := callsWith(calls, "flatcar-install ")
				if msg, failing := strings.CutPrefix(tc.want, "fail: "); failing {
					if ok || len(installs) != 0 || len(callsWith(calls, "wipefs ")) != 0 {
						t.Errorf("%s: want a failure before any disk is touched; calls:\n%s", sh[0], strings.Join(calls, "\n"))
					}
					reports := callsWith(calls, "curl ")
					if len(reports) != 2 || !strings.Contains(reports[1], `"event":"failed"`) || !strings.Contains(reports[1], msg) {
						t.Errorf("%s: the failure reported to Racker does not say %q:\n%s\n%s", sh[0], msg, strings.Join(reports, "\n"), out)
					}
					if len(callsWith(calls, "systemctl ")) != 0 {
						t.Errorf("%s: rebooted after a failure", sh[0])
					}
					continue
				}
				if !ok || len(installs) != 1 || !strings.HasPrefix(installs[0], "-d "+tc.want+" ") {
					t.Errorf("%s: flatcar-install %q, want -d %s\n%s", sh[0], installs, tc.want, out)
				}
				for _, w := range callsWith(calls, "wipefs -a ") {
					if strings.HasPrefix(w, tc.want) {
						t.Errorf("%s: wiped the install disk (%s)", sh[0], w)
					}
				}
			}
		})
	}
}

func TestInstallScriptReportsFailure(t *testing.T) {
	n := newFakeNode(t)
	n.disk("vda", 40*gib)
	os.WriteFile(filepath.Join(n.dir, "bin", "flatcar-install"), []byte("#!/bin/sh\nexit 3\n"), 0o755)
	calls, ok, _ := n.run([]string{"/bin/sh"}, InstallParams{})
	if ok {
		t.Fatal("install.sh succeeded although flatcar-install failed")
	}
	if !strings.Contains(strings.Join(calls, "\n"), `"event":"failed","message":"flatcar-install -d /dev/vda failed"`) || len(callsWith(calls, "systemctl")) != 0 ||
		!strings.Contains(strings.Join(calls, "\n"), "Authorization: Bearer "+testToken) {
		t.Errorf("calls:\n%s", strings.Join(calls, "\n"))
	}
	// Without the signing key nothing is touched.
	n = newFakeNode(t)
	n.disk("vda", 40*gib)
	p, _ := InstallParams{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "v", SigningKey: testKey, Token: testToken}.check()
	script := strings.Replace(strings.Replace(installScript(p), "\nSYS=/sys\n", "\nSYS="+n.sys+"\n", 1), "\nKEY='"+SigningKeyPath+"'\n", "\nKEY='"+filepath.Join(n.dir, "none")+"'\n", 1)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=" + filepath.Join(n.dir, "bin")}
	if cmd.Run() == nil {
		t.Error("install.sh went on without the image signing key")
	}
	b, _ := os.ReadFile(n.log)
	if !strings.Contains(string(b), "no image signing key") || strings.Contains(string(b), "flatcar-install") {
		t.Errorf("calls without a key:\n%s", b)
	}
}

func TestParseDiskRule(t *testing.T) {
	for in, want := range map[string]DiskRule{
		"":         {},
		"/dev/sda": {Path: "/dev/sda"},
		"/dev/disk/by-path/pci-0000:00:17.0-ata-1":   {Path: "/dev/disk/by-path/pci-0000:00:17.0-ata-1"},
		"/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_*": {Path: "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_*"},
		">=400GB": {MinBytes: 400_000_000_000},
		">= 480G": {MinBytes: 480_000_000_000},
		">=64GiB": {MinBytes: 64 << 30},
		">=1000":  {MinBytes: 1000},
		">=2TB":   {MinBytes: 2_000_000_000_000},
		">=512Mi": {MinBytes: 512 << 20},
	} {
		got, err := ParseDiskRule(in)
		if err != nil || got != want {
			t.Errorf("ParseDiskRule(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"sda", "400GB", ">=", ">=0", ">=-1G", ">=12X", "/dev/sda; reboot", "/dev/../etc/passwd", "/dev/x y", "/dev/a'b", ">=99999999999PB"} {
		if _, err := ParseDiskRule(bad); err == nil {
			t.Errorf("ParseDiskRule(%q) accepted it", bad)
		}
	}
}
