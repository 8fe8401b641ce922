package mgmtnode_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/mgmtnode"
)

// The test binary doubles as racker-sim for the node's and the
// container's first processes (the hidden commands racker-sim has).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case mgmtnode.BootCommand: // mgmt-boot --node-dir DIR
			fail(mgmtnode.Stage1(mgmtnode.Layout{Dir: os.Args[3]}))
		case mgmtnode.ContainerCommand: // container-init BUNDLE
			fail(mgmtnode.ContainerStage(os.Args[2]))
		}
	}
	os.Exit(m.Run())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stage:", err)
	os.Exit(1)
}

// bootTestNode boots a node from bin/mgmtos in a fresh network namespace
// and stops it (SIGTERM to its PID 1) when the test ends.
func bootTestNode(t *testing.T) (mgmtnode.Layout, int) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nsenter")
	image, _ := filepath.Abs("../../bin/mgmtos")
	testenv.RequireFile(t, filepath.Join(image, ".stamp")) // make mgmtos
	ns := fmt.Sprintf("mn%d", os.Getpid()%100000)
	netenv.ForTest(t, netenv.Topology{Namespaces: []string{ns}})
	l := mgmtnode.Layout{Dir: filepath.Join(t.TempDir(), "mgmt")}
	if err := mgmtnode.Prepare(l, image); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	proc, _, err := mgmtnode.Boot(l, netenv.NamespacePath(ns), self)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Signal(syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(proc.Pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		proc.Kill()
		if b, _ := os.ReadFile(l.Console()); !strings.Contains(string(b), "every unit stopped") {
			t.Errorf("the node did not shut down cleanly:\n%s", b)
		}
	})
	sock := fmt.Sprintf("/proc/%d/root/run/unitd/control.sock", proc.Pid)
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			b, _ := os.ReadFile(l.Console())
			t.Fatalf("the node did not come up:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return l, proc.Pid
}

// inNode runs a shell script in the node.
func inNode(t *testing.T, pid int, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := mgmtnode.Command(ctx, pid, "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

// The node is its own machine: its own root with a read-only /usr, none
// of the host's files or programs, PID 1 its service manager, its own
// hostname, and a unit enabled there survives nothing of the host.
func TestNodeIsItsOwnMachine(t *testing.T) {
	l, pid := bootTestNode(t)
	checks := map[string]string{
		"cat /proc/1/comm":          "init",
		"hostname":                  "localhost",
		"readlink /bin":             "usr/bin",
		"echo $PATH":                mgmtnode.Path,
		"ls /usr/share/oem | wc -l": "0",
		"test -e /usr/lib/ipxe || test -e /usr/bin/qemu-system-x86_64 || test -e /usr/bin/go || test -e /usr/sbin/dnsmasq || test -e " + l.Dir + " || echo clean": "clean",
		"touch /usr/x 2>&1 || echo read-only":                              "read-only",
		"test -d /run/systemd/system && echo sd":                           "sd",
		"getent passwd core | cut -d: -f6":                                 "/home/core",
		"ls /sys/class/net":                                                "lo",
		"systemctl is-system-running; systemctl is-active nothing.service": "inactive",
	}
	for script, want := range checks {
		out, _ := inNode(t, pid, script)
		if !strings.Contains(strings.TrimSpace(out), want) {
			t.Errorf("%s: %q, want %q", script, strings.TrimSpace(out), want)
		}
	}
	// A unit written and enabled in the node runs under its PID 1.
	script := `mkdir -p /etc/systemd/system && printf '[Service]\nExecStart=/bin/sleep 300\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/nap.service &&
systemctl daemon-reload && systemctl enable --now nap && systemctl is-active nap && ps -o ppid= -p $(systemctl show -p MainPID --value nap)`
	if out, err := inNode(t, pid, script); err != nil || !strings.Contains(out, "active") || !strings.HasSuffix(strings.TrimSpace(out), "1") {
		t.Fatalf("a unit in the node: %v\n%s", err, out)
	}
	if _, err := os.Lstat(l.Path("/etc/systemd/system/multi-user.target.wants/nap.service")); err != nil {
		t.Errorf("enable wrote no link on the node's root: %v", err)
	}
	if _, err := os.Stat("/etc/systemd/system/nap.service"); err == nil {
		t.Error("the unit reached the host's /etc")
	}
	// A session killed from outside ends its command (no strays in the node).
	cmd := mgmtnode.Command(context.Background(), pid, "/bin/sleep", "123")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	if out, _ := inNode(t, pid, "pgrep -f '^/bin/sleep 123' || echo none"); strings.TrimSpace(out) != "none" {
		t.Errorf("the command outlived its session: %s", out)
	}
}

// An image runs as `docker run --rm --privileged --pid host` would run it:
// its own root file system, /proc/1 the node's init, /.dockerenv, a
// network of its own, every capability; the image's env, and HOSTNAME.
func TestRunImageAsDockerWould(t *testing.T) {
	busybox := testenv.RequireFile(t, "/bin/busybox")
	testenv.RequireCommand(t, "skopeo")
	l, pid := bootTestNode(t)
	script := `set -e; test -f /.dockerenv; echo comm=$(cat /proc/1/comm); echo host=$HOSTNAME=$(hostname);
ls /proc/1/root/usr/lib/unitd >/dev/null; echo nodeinit=ok; echo net=$(ls /sys/class/net | tr '\n' ' ');
echo caps=$(grep CapEff /proc/self/status | cut -f2); echo greeting=$GREETING; test ! -e /usr/lib/unitd; echo pwd=$(pwd)`
	archive := writeImage(t, busybox, []string{"/bin/busybox", "sh", "-c", script}, []string{"PATH=/bin", "GREETING=hi"})
	var out strings.Builder
	if err := mgmtnode.RunImage(context.Background(), l, pid, archive, mustSelf(t), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"comm=init", "nodeinit=ok", "net=lo\n", "caps=" + hostCaps(t), "greeting=hi", "pwd=/work"} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "host=") || strings.Contains(got, "host==") {
		t.Errorf("HOSTNAME and hostname: %s", got)
	}
	entries, _ := os.ReadDir(l.Path("/var/lib/containers/racker-sim"))
	if len(entries) != 0 {
		t.Errorf("--rm left %d containers", len(entries))
	}
	// A failing command fails the run, with its output.
	bad := writeImage(t, busybox, []string{"/bin/busybox", "sh", "-c", "echo oops; exit 3"}, nil)
	out.Reset()
	if err := mgmtnode.RunImage(context.Background(), l, pid, bad, mustSelf(t), &out); err == nil || !strings.Contains(out.String(), "oops") {
		t.Errorf("a failing image: %v %q", err, out.String())
	}
	if err := mgmtnode.RunImage(context.Background(), l, pid, filepath.Join(t.TempDir(), "none.oci.tar"), mustSelf(t), &out); err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("a missing image: %v", err)
	}
}

// hostCaps is this (root) process's effective capability set: what a
// privileged container has too.
func hostCaps(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return ""
}

func mustSelf(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// writeImage writes an OCI archive (as `make image` writes Racker's) of a
// one-layer image holding busybox at /bin/busybox.
func writeImage(t *testing.T, busybox string, cmd, env []string) string {
	t.Helper()
	dir := t.TempDir()
	layerTar := filepath.Join(dir, "layer.tar")
	tarOut, err := exec.Command("tar", "-cf", layerTar, "--transform", "s,^,bin/,", "-C", filepath.Dir(busybox), filepath.Base(busybox)).CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v %s", err, tarOut)
	}
	layer, err := tarball.LayerFromFile(layerTar, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: cmd, Env: env, WorkingDir: "/work"})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.oci.tar")
	if out, err := exec.Command("tar", "-cf", archive, "-C", filepath.Join(dir, "layout"), ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	return archive
}
