package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/status"
)

// simulateNode plays a node behind its fake BMC against the real HTTP boot
// services: when powered on with PXE as boot device it fetches its iPXE
// script from its own planned address (127.0.0.x, on loopback) and, when
// told to install, posts the installing and installed callbacks; once its
// BMC boots it from disk, it posts booted. Fake BMCs, real HTTP.
// wipedInstalls maps a primary MAC to the install generation it installed
// with wipe-all.
var wipedInstalls sync.Map

// nodeCallbacks maps a simulated node's primary MAC to its callback poster
// (from the node's address, with its current token), so a test can make a
// node report again after bootstrap.
var nodeCallbacks sync.Map

func simulateNode(ctx context.Context, t *testing.T, base string, n plan.Node) {
	b := bmc.Fake(fakeBMCName(n.PrimaryMAC))
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: n.IP.AsSlice()}}).DialContext}}
	var token atomic.Value // string; set by this goroutine, read by nodeCallbacks' callers
	token.Store("")
	post := func(event string) {
		body, _ := json.Marshal(api.Callback{MAC: n.PrimaryMAC, Event: api.EventKind(event)})
		req, _ := http.NewRequest("POST", base+"/api/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.TokenHeader, api.TokenScheme+token.Load().(string))
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: posting %s: %v", n.Hostname, event, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("%s: posting %s: %s", n.Hostname, event, resp.Status)
		}
	}
	nodeCallbacks.Store(n.PrimaryMAC, post)
	seen, installed := len(b.Actions()), false
	for ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
		if acts := b.Actions(); len(acts) > seen {
			seen = len(acts)
			last := acts[len(acts)-1]
			if (last == bmc.ActionOn || last == bmc.ActionCycle) && b.Flags().Device == bmc.DevicePXE {
				resp, err := client.Get(base + "/ipxe?mac=" + n.PrimaryMAC)
				if err != nil {
					t.Errorf("%s: iPXE: %v", n.Hostname, err)
					continue
				}
				script, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(script), api.MatchboxPath+"/boot.ipxe") {
					// Chained to matchbox (lokoctl registered the node):
					// Lokomotive's installer fetches its config, installs
					// and reboots; the installed system fetches its own
					// config at its first boot. Neither calls back.
					hyp := strings.ReplaceAll(n.PrimaryMAC, ":", "-")
					for _, path := range []string{"/matchbox/ignition?uuid=&mac=" + hyp, "/matchbox/ignition?mac=" + n.PrimaryMAC + "&os=installed"} {
						resp, err := client.Get(base + path)
						if err != nil {
							t.Errorf("%s: %s: %v", n.Hostname, path, err)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							t.Errorf("%s: %s: %s", n.Hostname, path, resp.Status)
						}
					}
					continue
				}
				if strings.Contains(string(script), "kernel ") {
					// What the install config is built from: the target's wipe-all.
					if ns, err := api.NewClient(base).Nodes(ctx); err == nil {
						for _, rn := range ns {
							if rn.PrimaryMAC == n.PrimaryMAC && rn.WipeAll {
								wipedInstalls.Store(n.PrimaryMAC, rn.InstallGeneration)
							}
						}
					}
					// What a console shows: recorded by bootstrap (consolelog).
					if serial := b.Serial(); serial != nil {
						go io.WriteString(serial, "testos: flatcar-install: writing the OS image to /dev/vda\r\n")
					}
					// The live system's Ignition: the install config carries the token.
					resp, err := client.Get(base + "/ignition?mac=" + n.PrimaryMAC + "&phase=install")
					if err != nil {
						t.Errorf("%s: install config: %v", n.Hostname, err)
						continue
					}
					cfg, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: install config: %s %s", n.Hostname, resp.Status, cfg)
						continue
					}
					token.Store(installToken(t, cfg))
					post("installing")
					post("installed")
					installed = true
				}
			}
			continue
		}
		if f := b.Flags(); installed && f.Device == bmc.DeviceDisk && f.Persistent {
			post("booted")
			installed = false
		}
	}
}

// serveOnLoopback runs the real boot services of cfg through their door,
// on sockets of the test's own on loopback (DHCP and TFTP get no client
// here; HTTP is what the nodes and Racker use). served is closed once
// they stopped, after ctx ended.
func serveOnLoopback(ctx context.Context, t *testing.T, cfg bootsvc.Config) (ln net.Listener, served chan struct{}) {
	t.Helper()
	udp := func() net.PacketConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DHCPConn, cfg.TFTPConn, cfg.HTTPListener, cfg.TFTPRoot = udp(), udp(), ln, t.TempDir()
	svc, err := bootsvc.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	served = make(chan struct{})
	go func() {
		defer close(served)
		if err := svc.Serve(ctx); err != nil {
			t.Errorf("boot services: %v", err)
		}
	}()
	return ln, served
}

// bootRig is a rack of a management node and three nodes (the third with a
// dead BMC) on 127.0.0.0/24, served by the real HTTP boot services on
// loopback, with a simulated node behind each live fake BMC.
func bootRig(t *testing.T) (flags []string, url string) {
	flags, url, _ = bootRigWith(t, false)
	return flags, url
}

// bootRigWith is bootRig, with the boot services' matchbox when asked
// (its gRPC API on a port of its own, returned).
func bootRigWith(t *testing.T, withMatchbox bool, releaseOpts ...func(*images.Release)) (flags []string, url string, matchboxPort int) {
	oem, state := exampleRack(t)
	// A third node whose BMC never answers.
	f, err := os.OpenFile(filepath.Join(oem, "nodes.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("00:11:22:33:44:60, 00:11:22:33:44:61, 00:11:22:33:44:70, purple, dead BMC\n")
	f.Close()
	flags = append(rackFlags(oem, state), "--subnet", "127.0.0.0/24", "--controller-type", "red")

	env := &Env{OEMDir: oem, StateDir: state, MgmtMAC: "00:11:22:33:44:00", Stdout: io.Discard, Stderr: io.Discard}
	env.log = slog.New(slog.DiscardHandler)
	_, p, err := env.MakePlan(&PlanFlags{subnet: "127.0.0.0/24", Choices: plan.Choices{ControllerType: "red"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	release := &images.Release{OS: "testos", Version: "current", Dir: t.TempDir(), Files: []string{"flatcar_production_pxe.vmlinuz"},
		SigningKey: []byte("test key\n")}
	for _, fn := range releaseOpts {
		fn(release)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := bootsvc.Config{Plan: p, StateDir: state, Release: release, Matchbox: withMatchbox}
	if withMatchbox {
		mln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.MatchboxConn, matchboxPort = mln, mln.Addr().(*net.TCPAddr).Port
	}
	ln, served := serveOnLoopback(ctx, t, cfg)
	simsDone := make(chan struct{})
	var live []plan.Node
	for _, n := range p.Nodes {
		t.Cleanup(func() { bmc.ForgetFake(fakeBMCName(n.PrimaryMAC)) })
		if n.PrimaryMAC == "00:11:22:33:44:60" {
			bmc.Fake(fakeBMCName(n.PrimaryMAC)).SetDead(true)
			continue
		}
		live = append(live, n)
	}
	go func() {
		defer close(simsDone)
		done := make(chan struct{})
		for _, n := range live {
			go func() { simulateNode(ctx, t, "http://"+ln.Addr().String(), n); done <- struct{}{} }()
		}
		for range live {
			<-done
		}
	}()
	t.Cleanup(func() { cancel(); <-simsDone; <-served })
	return flags, "http://" + ln.Addr().String(), matchboxPort
}

func TestBootstrapStatusReprovision(t *testing.T) {
	flags, url := bootRig(t)
	drive := []string{"--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s"}

	code, out, errs := run(t, "", append(append([]string{"bootstrap", "--on-failure", "exclude"}, drive...), flags...)...)
	if code != 1 || !strings.Contains(errs, "1 node(s) failed") || !strings.Contains(errs, "00:11:22:33:44:60") {
		t.Fatalf("bootstrap with a dead BMC: exit %d, want 1 naming the node\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(out, "excluded") || !strings.Contains(out, "2 booted") {
		t.Errorf("summary:\n%s", out)
	}
	status := func() map[string]status.Node {
		t.Helper()
		code, out, errs := run(t, "", append([]string{"status", "-o", "json", "--boot-services", url}, flags...)...)
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errs)
		}
		var st struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		want := []string{"primary_mac", "hostname", "role", "phase", "bmc_reachable", "power", "boot_device", "os", "ip", "last_event", "last_event_at", "install_generation"}
		for _, n := range st.Nodes {
			for _, k := range want {
				if _, ok := n[k]; !ok && k != "last_event_at" {
					t.Errorf("status JSON node lacks %q: %v", k, n)
				}
			}
		}
		var typed status.Status
		json.Unmarshal([]byte(out), &typed)
		m := map[string]status.Node{}
		for _, n := range typed.Nodes {
			m[n.PrimaryMAC] = n
		}
		return m
	}
	st := status()
	for _, mac := range []string{"00:11:22:33:44:10", "00:11:22:33:44:20"} {
		n := st[mac]
		if n.Phase != orchestrator.Booted || n.BootDevice != "disk" || n.Power != "on" || n.OS != "testos current" ||
			n.BMCReachable == nil || !*n.BMCReachable || !strings.HasPrefix(n.IP, "127.0.0.") || !strings.HasPrefix(n.LastEvent, "booted") {
			t.Errorf("%s after bootstrap: %+v", mac, n)
		}
	}
	if st["00:11:22:33:44:10"].Role != "controller" || st["00:11:22:33:44:20"].Role != "worker" {
		t.Errorf("roles: %+v", st)
	}
	if n := st["00:11:22:33:44:60"]; n.Phase != orchestrator.Excluded || n.BMCReachable == nil || *n.BMCReachable {
		t.Errorf("dead BMC node: %+v", n)
	}
	// Why it was left out, and what its BMC said last, reach status.
	if n := st["00:11:22:33:44:60"]; !strings.Contains(n.Reason, "no progress in phase bmc_check") || !strings.Contains(n.LastError, "no answer") {
		t.Errorf("dead BMC node's reason %q, last error %q", n.Reason, n.LastError)
	}

	// Reprovision the worker: a new install generation with wipe-all, the
	// controller untouched; a controller needs --yes off a terminal.
	ctrlActions := len(bmc.Fake(fakeBMCName("00:11:22:33:44:10")).Actions())
	code, out, errs = run(t, "", append(append([]string{"reprovision", "00:11:22:33:44:10"}, drive...), flags...)...)
	if code == 0 || !strings.Contains(errs, "--yes") {
		t.Errorf("reprovision of a controller without --yes: exit %d: %s", code, errs)
	}
	code, out, errs = run(t, "", append(append([]string{"reprovision", "00:11:22:33:44:20"}, drive...), flags...)...)
	if code != 0 {
		t.Fatalf("reprovision: exit %d\n%s\n%s", code, out, errs)
	}
	st = status()
	if n := st["00:11:22:33:44:20"]; n.Phase != orchestrator.Booted || n.InstallGeneration != 1 {
		t.Errorf("reprovisioned worker: %+v", n)
	}
	if n := st["00:11:22:33:44:10"]; n.Phase != orchestrator.Booted || n.InstallGeneration != 0 {
		t.Errorf("untouched controller: %+v", n)
	}
	if got := len(bmc.Fake(fakeBMCName("00:11:22:33:44:10")).Actions()); got != ctrlActions {
		t.Errorf("reprovision of the worker power-cycled the controller")
	}
	if g, ok := wipedInstalls.Load("00:11:22:33:44:20"); !ok || g.(int) != 1 {
		t.Errorf("the reprovisioned worker did not install generation 1 with wipe-all (got %v)", g)
	}
	if _, ok := wipedInstalls.Load("00:11:22:33:44:10"); ok {
		t.Error("the controller installed with wipe-all")
	}
	// --no-wait returns once PXE is requested; status then shows the boot
	// services' newer observations of the node.
	code, out, errs = run(t, "", append(append([]string{"reprovision", "00:11:22:33:44:10", "--yes", "--no-wait"}, drive...), flags...)...)
	if code != 0 || !strings.Contains(out, "PXE requested for 1 node(s)") {
		t.Fatalf("reprovision --no-wait: exit %d\n%s\n%s", code, out, errs)
	}
	if n := status()["00:11:22:33:44:10"]; phaseRank(n.Phase) < phaseRank(orchestrator.PXERequested) || n.InstallGeneration != 1 {
		t.Errorf("right after --no-wait: %+v", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for status()["00:11:22:33:44:10"].Phase != orchestrator.Installed {
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the boot services' 'installed' for the controller: %+v", status()["00:11:22:33:44:10"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	nodes, err := api.NewClient(url).Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PrimaryMAC == "00:11:22:33:44:20" && n.Target != api.TargetDisk {
			t.Errorf("boot services after reprovision: %+v", n)
		}
	}
}

// On a terminal: the live view redraws in place, and a failure past the
// retries is a question; "e" excludes the node.
func TestBootstrapAsksOnATerminal(t *testing.T) {
	flags, url := bootRig(t)
	var out, errb bytes.Buffer
	// The wizard: Enter for the profile, the cluster name, the control
	// plane and the public addresses (the flags give the rest); then "e".
	env := &Env{Stdin: strings.NewReader("\n\n\n\ne\n"), Stdout: &out, Stderr: &errb, IsTerminal: func() bool { return true }}
	root := NewRoot(env)
	root.SetArgs(append([]string{"bootstrap", "--boot-services", url, "--bmc-driver", "fake", "--os", "testos",
		"--bmc-timeout", "1s", "--retries", "0"}, flags...))
	err := root.ExecuteContext(context.Background())
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("bootstrap: %v, want exit 1 for the excluded node\n%s\n%s", err, out.String(), errb.String())
	}
	o := out.String()
	for _, want := range []string{"Provisioning: lokomotive (Kubernetes) or flatcar (plain Flatcar) [flatcar]:", "Public IP assignment", "failed: no progress in phase bmc_check", "[r]etry, [e]xclude", "\x1b[", "1 excluded"} {
		if !strings.Contains(o, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(errb.String(), `msg="node started"`) {
		t.Errorf("info log lines under the live view:\n%s", errb.String())
	}
}

func phaseRank(p orchestrator.Phase) int { return p.Rank() }

// cancelAfter cancels a context once n tables have been written.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Count(c.buf.String(), "HOSTNAME") >= c.n {
		c.cancel()
	}
	return len(p), nil
}

// status --watch keeps redrawing until interrupted, and works with no
// state and no boot services yet (every planned node pending).
func TestStatusWatch(t *testing.T) {
	oem, state := exampleRack(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &cancelAfter{n: 3, cancel: cancel}
	env := &Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: io.Discard, IsTerminal: func() bool { return false }}
	root := NewRoot(env)
	root.SetArgs(append([]string{"status", "--watch", "--interval", "10ms", "--boot-services", "http://127.0.0.1:1"}, rackFlags(oem, state)...))
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	o := out.buf.String()
	if strings.Count(o, "HOSTNAME") < 3 || strings.Count(o, "pending") < 6 {
		t.Errorf("three tables of two pending nodes wanted:\n%s", o)
	}
	if _, err := os.Stat(filepath.Join(state, orchestrator.StateFile)); !os.IsNotExist(err) {
		t.Error("status wrote provisioning state")
	}
}

// installToken reads TOKEN='…' out of an install config's install.sh.
func installToken(t *testing.T, cfg []byte) string {
	t.Helper()
	var doc struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source string `json:"source"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range doc.Storage.Files {
		if f.Path == "/opt/racker/install.sh" {
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(f.Contents.Source, "data:;base64,"))
			_, rest, _ := strings.Cut(string(b), "\nTOKEN='")
			tok, _, _ := strings.Cut(rest, "'")
			return tok
		}
	}
	t.Fatal("no install.sh in the install config")
	return ""
}
