package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// TestInstallFromContainer runs `racker install` the way the installer image
// does (`docker run --privileged --pid host`), without a container engine:
//   - a fake "host": pid 1 of a new pid namespace, chrooted into a folder
//     holding busybox (sh, nsenter) and a systemctl stand-in script that
//     logs its arguments (a fake, the only one here);
//   - the "container": racker in that pid namespace, in its own mount
//     namespace, with container=docker, running from an unpacked payload.
//
// It must find the host through /proc/1/root, install there, and drive the
// host's systemctl through a chroot + nsenter into pid 1's namespaces.
func TestInstallFromContainer(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.RequireCommand(t, "unshare")
	nsenter := testenv.RequireCommand(t, "nsenter")
	busybox := testenv.RequireFile(t, "/bin/busybox")

	// Payloads as the image holds them: /racker/bin/racker + release files;
	// 2.0.0 migrates the state (version 1 → 2) with a shell script, which
	// must run on the host since the image has no shell.
	racker := buildRacker(t)
	src := t.TempDir()
	if _, err := runRacker(t, "install", "--image", buildArchive(t, racker, "1.4.2"), "--root", src); err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(src, "opt/racker/versions/1.4.2")
	src2 := t.TempDir()
	migration := "#!/bin/sh\ntouch \"$1/migrated-on-host\"\n"
	if _, err := runRacker(t, "install", "--image", buildArchiveState(t, racker, "2.0.0", 2, migration), "--root", src2); err != nil {
		t.Fatal(err)
	}
	payload2 := filepath.Join(src2, "opt/racker/versions/2.0.0")

	host := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "etc", "proc", "run/systemd/system"} {
		mustOK(t, os.MkdirAll(filepath.Join(host, d), 0o755))
	}
	copyFile(t, busybox, filepath.Join(host, "bin/busybox"), 0o755)
	for _, l := range []string{"bin/sh", "bin/sleep", "usr/bin/nsenter"} {
		mustOK(t, os.Symlink("/bin/busybox", filepath.Join(host, l)))
	}
	mustOK(t, os.WriteFile(filepath.Join(host, "usr/bin/systemctl"), []byte(
		"#!/bin/sh\necho \"$@\" >> /systemctl.log\n[ \"$1\" = is-active ] && exit 0\nexit 0\n"), 0o755))

	// The host's pid 1: a new pid namespace whose init is chrooted into host.
	hostInit := exec.Command(unshare, "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "/bin/sh", "-c",
		fmt.Sprintf("mount -t proc proc %s/proc && exec chroot %s /bin/sleep 600", host, host))
	hostInit.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	mustOK(t, hostInit.Start())
	t.Cleanup(func() {
		hostInit.Process.Kill()
		hostInit.Wait()
	})
	initPid := waitChild(t, hostInit.Process.Pid)
	t.Cleanup(func() { syscall.Kill(initPid, syscall.SIGKILL) }) // ends the whole pid namespace

	// The "container": pid namespace of the host, its own mount namespace
	// with a /proc for that pid namespace, container=docker.
	inContainer := func(payload string) string {
		t.Helper()
		script := fmt.Sprintf("mount -t proc proc /proc && exec env container=docker %s install", filepath.Join(payload, "bin/racker"))
		cmd := exec.Command(nsenter, "-t", strconv.Itoa(initPid), "-p", "--", unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script)
		out, err := cmd.CombinedOutput()
		t.Logf("racker install in the container:\n%s", out)
		if err != nil {
			t.Fatalf("racker install in the container: %v", err)
		}
		return string(out)
	}
	out := inContainer(payload)

	v, err := os.ReadFile(filepath.Join(host, "opt/racker/current/VERSION"))
	if err != nil || strings.TrimSpace(string(v)) != "1.4.2" {
		t.Fatalf("host's current version: %q, %v", v, err)
	}
	if target, err := os.Readlink(filepath.Join(host, "opt/bin/racker")); err != nil || target != "../racker/current/bin/racker" {
		t.Fatalf("host's /opt/bin/racker → %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(host, "etc/systemd/system/racker-serve.service")); err != nil {
		t.Fatalf("unit not installed on the host: %v", err)
	}
	log, err := os.ReadFile(filepath.Join(host, "systemctl.log"))
	if err != nil {
		t.Fatalf("the host's systemctl never ran: %v", err)
	}
	// A first install enables and starts racker serve.
	for _, want := range []string{"daemon-reload", "enable racker-serve.service", "start racker-serve.service"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("host systemctl calls:\n%s\nwant %q", log, want)
		}
	}
	if !strings.Contains(out, "enabled and started racker-serve.service") {
		t.Errorf("install output does not report the start:\n%s", out)
	}

	out = inContainer(payload2)
	v, _ = os.ReadFile(filepath.Join(host, "opt/racker/current/VERSION"))
	if strings.TrimSpace(string(v)) != "2.0.0" || !strings.Contains(out, "was 1.4.2") {
		t.Fatalf("after installing 2.0.0 from the container: current %q", v)
	}
	// An upgrade restarts the running unit, so the new version serves.
	if log, _ := os.ReadFile(filepath.Join(host, "systemctl.log")); !strings.Contains(string(log), "restart racker-serve.service") || !strings.Contains(out, "restarted racker-serve.service") {
		t.Errorf("the upgrade did not restart racker-serve:\n%s\n%s", log, out)
	}
	state := filepath.Join(host, "opt/racker-state")
	if _, err := os.Stat(filepath.Join(state, "migrated-on-host")); err != nil {
		t.Fatalf("the state migration did not run on the host: %v", err)
	}
	if sv, _ := os.ReadFile(filepath.Join(state, "state-version")); strings.TrimSpace(string(sv)) != "2" {
		t.Fatalf("state version after the migration: %q", sv)
	}
}

// waitChild returns the pid of parent's only child, once it exists.
func waitChild(t *testing.T, parent int) int {
	t.Helper()
	for range 500 {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
		if f := strings.Fields(string(data)); len(f) == 1 {
			pid, _ := strconv.Atoi(f[0])
			// Wait until the child has chrooted (its root is no longer ours).
			if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err == nil && root != "/" {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
					return pid
				}
			}
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 10e6}, nil)
	}
	t.Fatal("the host's init never started")
	return 0
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	mustOK(t, err)
	mustOK(t, os.WriteFile(to, data, mode))
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
