package rack_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/rack"
	"github.com/racker/racker/simulator/simcli"
	"github.com/racker/racker/simulator/vm"
)

// The test binary doubles as racker-sim: the rack runs its vBMCs and
// `exec` through SimBinary, and here that is this binary with
// RACKER_SIM_SELF=1, so the test exercises exactly the code under test.
func TestMain(m *testing.M) {
	if os.Getenv("RACKER_SIM_SELF") == "1" {
		os.Exit(simcli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// requireRack checks what a rack needs and returns the Config fields that
// name the images: Racker's installer image (the newest
// bin/racker-*.oci.tar, make image), the management node's OS (make
// mgmtos) and the test OS (make testos).
func requireRack(t *testing.T) rack.Config {
	testenv.RequireRoot(t)
	for _, c := range []string{"ip", "iptables", "qemu-img", "libvirtd", "virtlogd", "ipmitool", "nsenter", "skopeo"} {
		testenv.RequireCommand(t, c)
	}
	testenv.RequireFile(t, "/usr/bin/qemu-system-x86_64")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	images, _ := filepath.Glob(filepath.Join(root, "bin", "racker-*.oci.tar"))
	if len(images) == 0 {
		testenv.Missing(t, "no installer image bin/racker-*.oci.tar (make image)")
	}
	slices.SortFunc(images, func(a, b string) int { return modTime(b).Compare(modTime(a)) })
	testenv.RequireFile(t, filepath.Join(root, "bin", "mgmtos", ".stamp"))                                    // make mgmtos
	testenv.RequireFile(t, filepath.Join(root, "bin", "testos", "current", "flatcar_production_pxe.vmlinuz")) // make testos
	return rack.Config{RackerImage: images[0], MgmtOS: filepath.Join(root, "bin", "mgmtos"), TestOSDir: filepath.Join(root, "bin", "testos")}
}

func modTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// onMgmtNet runs a host program in the management node's network
// namespace only (ipmitool, iptables: tools Flatcar has not).
func onMgmtNet(t *testing.T, s *rack.State, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.MgmtNamespace()}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// simCmd runs this binary as racker-sim.
func simCmd(ctx context.Context, s *rack.State, args ...string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := exec.CommandContext(ctx, exe, append([]string{"--name", s.Name, "--dir", s.Dir}, args...)...)
	cmd.Env = append(os.Environ(), "RACKER_SIM_SELF=1")
	return cmd
}

// inMgmt runs a shell script inside the management node.
func inMgmt(t *testing.T, s *rack.State, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := simCmd(ctx, s, "exec", "--", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// leftovers lists what of the rack is still on the host.
func leftovers(t *testing.T, s *rack.State, pids []int) []string {
	var left []string
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, s.Name+"-") {
			left = append(left, "interface "+l.Attrs().Name)
		}
	}
	nss, _ := os.ReadDir(netenv.NamespaceDir)
	for _, ns := range nss {
		if strings.HasPrefix(ns.Name(), s.Name+"-") {
			left = append(left, "namespace "+ns.Name())
		}
	}
	m, err := vm.Connect(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	doms, _ := m.Domains(s.Name + "-")
	for _, d := range doms {
		left = append(left, "domain "+d)
	}
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	for _, mc := range s.Machines[1:] {
		if _, err := os.Stat(filepath.Join(vm.QEMULogDir, s.Domain(mc.Name)+".log")); err == nil {
			left = append(left, "libvirt log of "+s.Domain(mc.Name))
		}
	}
	if _, err := os.Stat(s.Dir); err == nil {
		left = append(left, "folder "+s.Dir)
	}
	out, _ := exec.Command("iptables-save").Output()
	if bytes.Contains(out, []byte("netenv:"+s.Name+"-")) {
		left = append(left, "iptables rules")
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(s.Dir)) {
		left = append(left, "mounts under "+s.Dir)
	}
	return left
}

// mustExecutable is this test binary, which also serves as racker-sim.
func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// upForTest builds a rack named prefix+PID in a temporary folder (cfg's
// Name, Dir and SimBinary are filled in) and takes it down when the test
// ends, failing the test if anything it made is left behind. It returns the
// rack and how long up took.
func upForTest(t *testing.T, prefix string, cfg rack.Config, log *slog.Logger) (*rack.State, time.Duration) {
	t.Helper()
	exe := mustExecutable(t)
	// Children (vBMCs, exec) run this binary as racker-sim through the
	// environment they inherit; TestMain only reads it at process start.
	t.Setenv("RACKER_SIM_SELF", "1")
	base, err := os.MkdirTemp("", "rack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	cfg.Name = fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	cfg.Dir = filepath.Join(base, cfg.Name)
	cfg.SimBinary = exe
	ctx := context.Background()
	start := time.Now()
	s, err := rack.Up(ctx, cfg, log)
	took := time.Since(start)
	var pids []int
	if s != nil {
		for _, p := range s.Processes {
			pids = append(pids, p.PID)
		}
	}
	t.Cleanup(func() {
		if err := rack.Down(ctx, cfg.Dir, log); err != nil {
			t.Errorf("down: %v", err)
		}
		if s != nil {
			if left := leftovers(t, s, pids); len(left) > 0 {
				t.Errorf("left behind after down: %s", strings.Join(left, ", "))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, took
}

// TestRackUpDriveBMCAndDown builds a 3-server rack, checks the management
// node (its files, Racker's factory check, racker serve), drives a virtual
// BMC with ipmitool from the management node at the address the BMC got by
// DHCP from racker serve, injects faults, and takes the rack down: nothing
// may be left behind.
func TestRackUpDriveBMCAndDown(t *testing.T) {
	cfg := requireRack(t)
	cfg.Nodes, cfg.Types, cfg.UEFITypes, cfg.MemoryMiB, cfg.Disks = 3, []string{"red", "blue"}, []string{"blue"}, 256, []string{"10G"}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx := context.Background()
	s, upTime := upForTest(t, "rt", cfg, log)
	start := time.Now().Add(-upTime) // when up began
	cfg.Name, cfg.Dir, cfg.SimBinary = s.Name, s.Dir, mustExecutable(t)
	t.Logf("FIGURE: racker-sim up with 3 servers took %.2f s", upTime.Seconds())
	if len(s.Processes) != 4 {
		t.Fatalf("want 3 vBMCs and the management node running, got %+v", s.Processes)
	}

	// up again is idempotent: same machines, nothing new.
	s2, err := rack.Up(ctx, cfg, log)
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	bigger := cfg
	bigger.Nodes = 5
	if _, err := rack.Up(ctx, bigger, log); err == nil {
		t.Fatal("up with another node count over an existing rack succeeded")
	}
	if s2.Machines[2].PrimaryMAC != s.Machines[2].PrimaryMAC || len(s2.Processes) != 4 || s2.Processes[0].PID != s.Processes[0].PID ||
		s2.Processes[3].PID != s.Processes[3].PID {
		t.Fatalf("second up changed the rack: %+v", s2.Processes)
	}
	if b, _ := os.ReadFile(filepath.Join(s.MgmtDir(), "installer.log")); bytes.Count(b, []byte("$ docker run")) != 1 {
		t.Errorf("the installer image ran %d times over two ups, want once:\n%s", bytes.Count(b, []byte("$ docker run")), b)
	}

	// The management node is Flatcar-shaped and got Racker only from its
	// installer image: racker serve runs from the installed unit.
	out, err := inMgmt(t, s, `test ! -e /usr/lib/ipxe && test ! -e /usr/bin/qemu-system-x86_64 && ! touch /usr/probe 2>/dev/null &&
systemctl is-enabled racker-serve && systemctl is-active racker-serve && readlink /proc/$(systemctl show -p MainPID --value racker-serve)/exe`)
	if err != nil || !strings.Contains(out, "/opt/racker/versions/") {
		t.Fatalf("the management node: %v\n%s", err, out)
	}
	// exec passes the command's exit code through.
	if err := simCmd(ctx, s, "exec", "--", "sh", "-c", "exit 7").Run(); err == nil || err.(*exec.ExitError).ExitCode() != 7 {
		t.Errorf("exec of a command exiting 7: %v", err)
	}

	// The management node sees its own OEM folder and Racker accepts it.
	out, err = inMgmt(t, s, "racker factory check && stat -c %a /usr/share/oem/ipmi_password && cat /usr/share/oem/nodes.csv && ls /opt/racker-state")
	if err != nil {
		t.Fatalf("factory check in the management node: %v\n%s", err, out)
	}
	if !strings.Contains(out, "\n600\n") {
		t.Errorf("ipmi_password is not mode 0600:\n%s", out)
	}
	m, err := vm.Connect(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, mc := range s.Machines[1:] {
		x, err := m.XML(s.Domain(mc.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(x, mc.PrimaryMAC) || !strings.Contains(out, mc.PrimaryMAC+", "+mc.BMCMAC+", "+mc.SecondaryMAC+", "+mc.Type) {
			t.Errorf("%s: nodes.csv and the domain disagree on its MACs", mc.Name)
		}
		if (mc.Type == "blue") != strings.Contains(x, vm.OVMFCode) {
			t.Errorf("%s (type %s): UEFI firmware only for --uefi-types", mc.Name, mc.Type)
		}
	}
	// Nothing of the management node leaked to the host's real paths.
	if _, err := os.Stat("/usr/share/oem/nodes.csv"); err == nil {
		if b, _ := os.ReadFile("/usr/share/oem/nodes.csv"); bytes.Contains(b, []byte(s.Machines[1].PrimaryMAC)) {
			t.Error("the management node's nodes.csv is visible on the host")
		}
	}

	// Every vBMC gets its address by DHCP from racker serve: then the rack
	// is ready for Racker.
	bmcIPs := map[string]string{}
	for i := 0; i < 600 && len(bmcIPs) < 3; i++ { // bounded wait, not a speed assertion
		for _, mc := range s.Machines[1:] {
			if b, err := os.ReadFile(s.BMCAddrFile(mc.Name)); err == nil {
				bmcIPs[mc.Name] = strings.TrimSpace(string(b))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(bmcIPs) < 3 {
		serveLog, _ := os.ReadFile(s.Node().Path("/var/log/units/racker-serve.service.log"))
		vbmcLog, _ := os.ReadFile(filepath.Join(s.Dir, "nodes", "n1", "vbmc.log"))
		t.Fatalf("vBMCs with a DHCP address: %v\nserve:\n%s\nvbmc n1:\n%s", bmcIPs, serveLog, vbmcLog)
	}
	t.Logf("FIGURE: from up to every vBMC leased (rack ready): %.2f s", time.Since(start).Seconds())
	bmcIP := bmcIPs["n1"]
	password, err := os.ReadFile(filepath.Join(s.OEMDir(), "ipmi_password"))
	if err != nil {
		t.Fatal(err)
	}
	ipmi := func(args string) (string, error) {
		return onMgmtNet(t, s, []string{"IPMI_PASSWORD=" + strings.TrimSpace(string(password))},
			append([]string{"ipmitool", "-I", "lanplus", "-C", "17", "-H", bmcIP, "-U", "racker", "-E"}, strings.Fields(args)...)...)
	}
	if out, err := ipmi("power status"); err != nil || !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("power status at %s: %v\n%s", bmcIP, err, out)
	}
	if out, err := ipmi("chassis bootdev pxe options=persistent,efiboot"); err != nil {
		t.Fatalf("bootdev: %v\n%s", err, out)
	}
	if out, err := ipmi("raw 0x00 0x09 0x05 0x00 0x00"); err != nil || !strings.Contains(out, "05 e0 04 00 00 00") {
		t.Fatalf("boot flags read back: %v\n%s", err, out)
	}
	if out, err := ipmi("power on"); err != nil {
		t.Fatalf("power on: %v\n%s", err, out)
	}
	// A vBMC answers power on before the domain has started (as a real
	// BMC does); libvirt reports the domain paused while QEMU starts.
	var st *rack.Status
	for i := 0; i < 300; i++ {
		if st, err = rack.GetStatus(ctx, s, nil); err != nil {
			t.Fatal(err)
		}
		if st.Nodes[0].Power != "paused" && st.Nodes[0].Power != "off" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Nodes[0].Power != "on" || st.Nodes[0].BMCIP != bmcIP || st.Nodes[1].Power != "off" || st.Serve != "running" {
		t.Fatalf("status after power on of n1: %+v", st)
	}
	// The CLI's JSON status carries the documented fields.
	jout, err := simCmd(ctx, s, "status", "-o", "json").Output()
	if err != nil || !bytes.Contains(jout, []byte(`"bmc_ip": "`+bmcIP+`"`)) || !bytes.Contains(jout, []byte(`"console_log"`)) {
		t.Fatalf("status -o json: %v\n%s", err, jout)
	}
	if out, err := ipmi("power off"); err != nil {
		t.Fatalf("power off: %v\n%s", err, out)
	}

	// Faults: install-fail puts the rule in the management node, install-ok
	// removes it; bmc-down pulls the BMC's cable, link-down the NIC's.
	if err := rack.Fault(ctx, s, "n2", rack.FaultInstallFail, nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := onMgmtNet(t, s, nil, "iptables", "-S", "INPUT"); !strings.Contains(out, s.Machines[2].PrimaryMAC) {
		t.Fatalf("install-fail rule missing:\n%s", out)
	}
	if err := rack.Fault(ctx, s, "n2", rack.FaultInstallOK, nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := onMgmtNet(t, s, nil, "iptables", "-S", "INPUT"); strings.Contains(out, s.Machines[2].PrimaryMAC) {
		t.Fatalf("install-ok left the rule:\n%s", out)
	}
	if err := rack.Fault(ctx, s, "n1", rack.FaultBMCDown, nil); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(netenv.Names{Instance: s.Name}.Iface("n1", "b"))
	if err != nil || l.Attrs().Flags&(1<<0) != 0 { // net.FlagUp
		t.Fatalf("bmc-down: the BMC's cable is still up (%v)", err)
	}
	if err := rack.Fault(ctx, s, "n1", rack.FaultBMCUp, nil); err != nil {
		t.Fatal(err)
	}
	if err := rack.Fault(ctx, s, "n3", rack.FaultLinkDown, nil); err != nil {
		t.Fatal(err)
	}
	if x, _ := m.XML(s.Domain("n3")); !strings.Contains(x, "<link state='down'/>") {
		t.Fatal("link-down not applied to n3")
	}
	if err := rack.Fault(ctx, s, "n3", "melt", nil); err == nil {
		t.Fatal("an unknown fault was accepted")
	}
}

// TestRackWithoutBMCs is the laptop mode: no BMC namespaces or vBMCs, the
// VMs and the management node as usual; down still leaves nothing.
func TestRackWithoutBMCs(t *testing.T) {
	cfg := requireRack(t)
	cfg.Nodes, cfg.NoBMC = 1, true
	ctx := context.Background()
	// A file this process holds open and inheritable, as `flock LOCK
	// racker-sim up` holds its lock: the rack's daemons must not keep it.
	held := filepath.Join(t.TempDir(), "held.lock")
	fd, err := syscall.Open(held, syscall.O_CREAT|syscall.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	s, _ := upForTest(t, "rn", cfg, nil)
	for _, p := range s.Processes {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID))
		for _, f := range fds {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.PID, f.Name())); target == held {
				t.Errorf("%s (pid %d) inherited this process's open file %s", p.Role, p.PID, held)
			}
		}
	}
	for _, p := range s.Processes {
		if strings.HasPrefix(p.Role, "vbmc") {
			t.Errorf("--no-bmc started %s", p.Role)
		}
	}
	if netenv.NamespaceExists(s.BMCNamespace("n1")) {
		t.Error("--no-bmc made a BMC namespace")
	}
	st, err := rack.GetStatus(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].BMC != "none" || st.Nodes[0].Power != "off" || st.Nodes[0].Boot != "network" {
		t.Fatalf("status: %+v", st.Nodes)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
