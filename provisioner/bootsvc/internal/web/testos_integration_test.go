package web

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

// TestInstallAndBootTestOS checks Racker's side of the boot contract
// against the simulator's test OS, which implements the other side
// independently: the test OS kernel boots under QEMU (TCG) with the kernel
// arguments of Racker's own iPXE install script, runs Racker's install
// config (wipe-all; Flatcar's disk rule takes the 12 GiB disk over the
// 4 GiB one; flatcar-install checks the image with the key Racker served),
// calls back, reboots; then the installed disk boots on SeaBIOS, fetches
// its boot config and calls back booted.
// QEMU's user network lets the guest reach this test's server on loopback
// through 10.0.2.2; nothing else is contacted.
func TestInstallAndBootTestOS(t *testing.T) {
	qemu := testenv.RequireCommand(t, "qemu-system-x86_64")
	root := repoRoot(t)
	testosDir := filepath.Join(root, "bin", "testos")
	for _, f := range []string{images.Kernel, images.Initrd, images.Image} {
		testenv.RequireFile(t, filepath.Join(testosDir, "current", f))
	}
	// The release as racker serve prepares it: signatures checked, the key
	// the nodes get, the version its version.txt names.
	release, err := images.Prepare(context.Background(), images.Spec{OS: "testos", Dir: testosDir})
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:5e:00:10"
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "ssh"), 0o755)
	os.WriteFile(filepath.Join(state, "ssh", "id_ed25519.pub"), []byte(testPK+"\n"), 0o644)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// The plan puts the node on QEMU's user network at the address its DHCP
	// server leases (10.0.2.15): the boot config's .network file says
	// DHCP=no, and the installed node then reaches Racker only through its
	// static address, as in a rack.
	p := &plan.Plan{Subnet: netip.MustParsePrefix("10.0.2.0/24"), ClusterName: "racker",
		Management: plan.Node{PrimaryMAC: "52:54:00:5e:00:01", Role: plan.Management, IP: netip.MustParseAddr("10.0.2.2")},
		Nodes: []plan.Node{{PrimaryMAC: mac, Type: "red", Role: plan.Controller, Hostname: "racker-controller-1",
			IP: netip.MustParseAddr("10.0.2.15")}}}
	srv, err := New(Config{Plan: p, StateDir: state, BaseURL: "http://10.0.2.2:" + strconv.Itoa(port),
		Release: release,
		// Seen through QEMU's user network, the guest's requests come from loopback.
		LeaseOf: func(m string) (netip.Addr, bool) { return netip.MustParseAddr("127.0.0.1"), m == mac },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // a safety bound, not an assertion
	defer cancel()
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { stop(); <-served; srv.Close() })
	local := "http://" + ln.Addr().String()
	client := api.NewClient(local)

	if _, err := client.Reinstall(ctx, mac, true); err != nil {
		t.Fatal(err)
	}
	script := httpGet(t, local+"/ipxe?mac="+mac)
	kernelArgs := kernelLine(t, script)

	// Sparse: vda is under Flatcar's 10 GB and holds an "old OS" that
	// wipe-all must erase; vdb is the install disk.
	small, big := filepath.Join(dir, "vda.img"), filepath.Join(dir, "vdb.img")
	makeDisk(t, small, 4<<30, 0)
	writeGPT(t, small)
	makeDisk(t, big, 12<<30, 0)
	nic := "virtio-net-pci,netdev=n0,mac=" + mac

	start := time.Now()
	install := startQEMU(t, qemu, "install",
		"-kernel", filepath.Join(release.Dir, images.Kernel), "-initrd", filepath.Join(release.Dir, images.Initrd), "-append", kernelArgs,
		"-netdev", "user,id=n0", "-device", nic,
		"-drive", "file="+small+",format=raw,if=virtio", "-drive", "file="+big+",format=raw,if=virtio")
	var seq uint64
	seq = waitFor(t, ctx, client, seq, mac, api.KindInstalling, install)
	seq = waitFor(t, ctx, client, seq, mac, api.KindInstalled, install)
	t.Logf("figure: PXE kernel to installed callback  %.1f s", time.Since(start).Seconds())
	if err := install.wait(ctx); err != nil {
		t.Fatalf("install VM: %v", err)
	}
	if n := nodeState(t, client, mac); n.Target != api.TargetDisk || n.WipeAll {
		t.Fatalf("after install: %+v", n)
	}
	if head := readHead(t, small, 1024); string(head[512:520]) == "EFI PART" || head[510] == 0x55 {
		t.Error("wipe-all left the old OS's partition table on the small disk")
	}
	if head := readHead(t, big, 1024); head[510] != 0x55 || head[511] != 0xaa || string(head[512:520]) != "EFI PART" {
		t.Error("the 12 GiB install disk has no Flatcar-layout image")
	}

	// An installed node that netboots again is sent to its disk.
	if s := httpGet(t, local+"/ipxe?mac="+mac); !strings.Contains(s, "sanboot") {
		t.Errorf("installed node's iPXE script:\n%s", s)
	}

	start = time.Now()
	boot := startQEMU(t, qemu, "boot", "-netdev", "user,id=n0", "-device", nic,
		"-drive", "file="+big+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=0")
	waitFor(t, ctx, client, seq, mac, api.KindBooted, boot)
	t.Logf("figure: disk boot to booted callback      %.1f s", time.Since(start).Seconds())
	if !strings.Contains(boot.output(), "racker-controller-1") {
		t.Errorf("the booted system does not show its hostname:\n%s", boot.output())
	}
	evs, _ := client.Events(ctx, 0, 0)
	for _, want := range []string{"ipxe/install", "ignition/install", "ignition/boot"} {
		k, m, _ := strings.Cut(want, "/")
		if !hasEvent(evs, mac, api.EventKind(k), m) {
			t.Errorf("no %s event", want)
		}
	}
	if n := nodeState(t, client, mac); n.Phase != api.PhaseBooted || n.Target != api.TargetDisk {
		t.Errorf("after boot: %+v", n)
	}
}

func repoRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// kernelLine returns the kernel arguments of an iPXE install script, as
// iPXE passes them (everything after the kernel URL).
func kernelLine(t *testing.T, script string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "kernel "); ok {
			_, args, _ := strings.Cut(rest, " ")
			return args
		}
	}
	t.Fatalf("no kernel line in\n%s", script)
	return ""
}

func makeDisk(t *testing.T, path string, size int64, fill byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	if fill != 0 {
		f.WriteAt(bytes.Repeat([]byte{fill}, 1<<20), 0)
	}
}

// writeGPT gives a disk image a real GPT with one partition (sfdisk), as an
// old install leaves it: what wipefs must find and erase.
func writeGPT(t *testing.T, path string) {
	t.Helper()
	sfdisk := testenv.RequireCommand(t, "sfdisk")
	cmd := exec.Command(sfdisk, "-q", path)
	cmd.Stdin = strings.NewReader("label: gpt\nsize=1M, name=ROOT\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
}

func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	io.ReadFull(f, b)
	return b
}

func nodeState(t *testing.T, c *api.Client, mac string) api.Node {
	t.Helper()
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PrimaryMAC == mac {
			return n
		}
	}
	t.Fatalf("no node %s", mac)
	return api.Node{}
}

// waitFor long-polls the events API until the node reports kind; a failed
// callback ends the test with its message.
func waitFor(t *testing.T, ctx context.Context, c *api.Client, after uint64, mac string, kind api.EventKind, v *qemuVM) uint64 {
	t.Helper()
	for {
		if ctx.Err() != nil {
			t.Fatalf("%s: no %s event before the safety bound", v.name, kind)
		}
		evs, err := c.Events(ctx, after, 20*time.Second)
		if err != nil {
			t.Fatalf("%s: waiting for %s: %v", v.name, kind, err)
		}
		for _, e := range evs {
			after = e.Seq
			if e.MAC != mac {
				continue
			}
			if e.Kind == api.KindFailed {
				t.Fatalf("%s: the node reported failed: %s", v.name, e.Message)
			}
			if e.Kind == kind {
				return after
			}
		}
		if v.exitedEarly() {
			t.Fatalf("%s: QEMU exited before the %s event", v.name, kind)
		}
	}
}

type qemuVM struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (v *qemuVM) Write(b []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.Write(b)
}

func (v *qemuVM) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

func (v *qemuVM) exitedEarly() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

func (v *qemuVM) wait(ctx context.Context) error {
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startQEMU(t *testing.T, qemu, name string, args ...string) *qemuVM {
	t.Helper()
	base := []string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"}
	v := &qemuVM{name: name, done: make(chan struct{})}
	v.cmd = exec.Command(qemu, append(base, args...)...)
	v.cmd.Stdout, v.cmd.Stderr = v, v
	// QEMU dies with the test binary even when a timeout kills it.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("starting QEMU for %s: %v", name, err)
	}
	go func() { v.err = v.cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.done
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, v.output())
		}
	})
	return v
}
