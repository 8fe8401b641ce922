package orchestrator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// The orchestrator against the real HTTP boot services (bootsvc/web on
// loopback), in a child process that the test kills with SIGKILL mid-run
// and starts again. Simulated nodes fetch their iPXE script and post their
// callbacks from their own planned addresses (127.0.0.x), reacting to the
// phases the orchestrator persists; BMCs are the fake:// driver inside the
// child, which logs every BMC operation to a file the test reads.

func TestMain(m *testing.M) {
	if os.Getenv("RACKER_ORCH_CHILD") != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain runs one orchestrator from the environment the test set.
func childMain() int {
	var specs []NodeSpec
	for _, s := range strings.Split(os.Getenv("RACKER_ORCH_NODES"), ",") {
		mac, host, _ := strings.Cut(s, "=")
		specs = append(specs, NodeSpec{PrimaryMAC: mac, Hostname: host, Role: "worker"})
	}
	opsLog := os.Getenv("RACKER_ORCH_OPS")
	var mu sync.Mutex
	inner := ControllerOpener(func(ctx context.Context, n NodeSpec) (string, error) {
		return "fake://" + strings.ReplaceAll(n.PrimaryMAC, ":", "-"), nil
	}, bmc.Options{})
	open := func(ctx context.Context, n NodeSpec) (BMC, error) {
		b, err := inner(ctx, n)
		return loggedBMC{BMC: b, mac: n.PrimaryMAC, path: opsLog, mu: &mu}, err
	}
	_, err := Run(context.Background(), Config{StateDir: os.Getenv("RACKER_ORCH_STATE"), Nodes: specs,
		Boot: api.NewClient(os.Getenv("RACKER_ORCH_URL")), OpenBMC: open, Policy: Policy{OnFailure: Cancel},
		PollWait: time.Second, Tick: 50 * time.Millisecond, BMCInterval: -1, OS: "testos current",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

type loggedBMC struct {
	BMC
	mac  string
	path string
	mu   *sync.Mutex
}

func (l loggedBMC) note(op string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintf(f, "%s %s\n", l.mac, op)
		f.Close()
	}
}

func (l loggedBMC) Diag(ctx context.Context) (string, error) { l.note("diag"); return l.BMC.Diag(ctx) }
func (l loggedBMC) SetBoot(ctx context.Context, d BootDevice, p, e bool) (bool, error) {
	l.note("setboot-" + string(d))
	return l.BMC.SetBoot(ctx, d, p, e)
}
func (l loggedBMC) Power(ctx context.Context, a string) error {
	l.note("power-" + a)
	return l.BMC.Power(ctx, a)
}

type crashRig struct {
	t      *testing.T
	dir    string
	url    string
	ops    string
	p      *plan.Plan
	child  *exec.Cmd
	exited chan error
	stderr *bytes.Buffer

	mu   sync.Mutex
	hold map[string]bool // nodes that do not post installed yet
	step map[string]int  // how far each simulated node got
}

func (c *crashRig) startChild() {
	var specs []string
	for _, n := range c.p.Nodes {
		specs = append(specs, n.PrimaryMAC+"="+n.Hostname)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RACKER_ORCH_CHILD=1", "RACKER_ORCH_STATE="+c.dir, "RACKER_ORCH_URL="+c.url,
		"RACKER_ORCH_OPS="+c.ops, "RACKER_ORCH_NODES="+strings.Join(specs, ","))
	c.stderr = &bytes.Buffer{}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.child, c.exited = cmd, make(chan error, 1)
	go func() { c.exited <- cmd.Wait() }()
}

func (c *crashRig) phases() map[string]Node {
	st, err := Load(c.dir)
	if err != nil { // never a torn file: atomic replace
		c.t.Errorf("reading the state while the child writes it: %v", err)
		return nil
	}
	out := map[string]Node{}
	for m, n := range st.Nodes {
		out[m] = *n
	}
	return out
}

// newCrashRig serves the real HTTP boot services for a 3-node plan on
// 127.0.0.0/24 and starts a simulated node per planned node.
func newCrashRig(t *testing.T) *crashRig {
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Line: 2, PrimaryMAC: "02:00:00:00:00:01", BMCMAC: "02:00:00:00:01:01", SecondaryMAC: "02:00:00:00:02:01", Type: "a"},
		{Line: 3, PrimaryMAC: "02:00:00:00:00:02", BMCMAC: "02:00:00:00:01:02", SecondaryMAC: "02:00:00:00:02:02", Type: "a"},
		{Line: 4, PrimaryMAC: "02:00:00:00:00:03", BMCMAC: "02:00:00:00:01:03", SecondaryMAC: "02:00:00:00:02:03", Type: "a"},
		{Line: 5, PrimaryMAC: "02:00:00:00:00:04", BMCMAC: "02:00:00:00:01:04", SecondaryMAC: "02:00:00:00:02:04", Type: "a"},
	}}
	p, err := plan.Make(inv, plan.Choices{Subnet: netipPrefix("127.0.0.0/24")}, plan.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	release := &images.Release{OS: "testos", Version: "current", Dir: t.TempDir(), Files: []string{"flatcar_production_pxe.vmlinuz"},
		SigningKey: []byte("a stand-in key: these simulated nodes install nothing\n")}
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
	// The real boot services, through their door, on loopback sockets.
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: dir, Release: release, TFTPRoot: t.TempDir(),
		DHCPConn: udp(), TFTPConn: udp(), HTTPListener: ln})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); svc.Serve(ctx) }()
	rig := &crashRig{t: t, dir: dir, url: "http://" + ln.Addr().String(), ops: filepath.Join(t.TempDir(), "ops"), p: p,
		hold: map[string]bool{}, step: map[string]int{}}
	var sims sync.WaitGroup
	t.Cleanup(func() {
		if rig.child != nil && rig.child.ProcessState == nil {
			rig.child.Process.Kill()
			<-rig.exited
		}
		cancel()
		sims.Wait()
		<-served
	})
	for _, n := range p.Nodes {
		sims.Add(1)
		go func() { defer sims.Done(); rig.simulate(ctx, n) }()
	}
	return rig
}

// simulate plays node n from the phases the orchestrator persists: iPXE
// fetch once PXE is requested, then the installing, installed (unless held)
// and booted callbacks, from the node's own address.
func (c *crashRig) simulate(ctx context.Context, n plan.Node) {
	t := c.t
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: n.IP.AsSlice()}}).DialContext}}
	token := ""
	post := func(ev string) bool {
		b, _ := json.Marshal(api.Callback{MAC: n.PrimaryMAC, Event: api.EventKind(ev)})
		req, _ := http.NewRequest("POST", c.url+"/api/v1/events", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.TokenHeader, api.TokenScheme+token)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("%s posting %s: %s", n.Hostname, ev, resp.Status)
		}
		return true
	}
	for ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		cur := c.phases()[n.PrimaryMAC]
		c.mu.Lock()
		s, held := c.step[n.PrimaryMAC], c.hold[n.PrimaryMAC]
		c.mu.Unlock()
		next := s
		switch {
		case s == 0 && cur.Phase == PXERequested:
			resp, err := client.Get(c.url + "/ipxe?mac=" + n.PrimaryMAC)
			if err != nil {
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The live system's Ignition: the install config, with the token.
			resp, err = client.Get(c.url + "/ignition?mac=" + n.PrimaryMAC + "&phase=install")
			if err != nil {
				break
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s fetching its install config: %s %s", n.Hostname, resp.Status, body)
				break
			}
			token = tokenIn(t, body)
			next = 1
		case s == 1 && cur.Phase == Netbooting:
			if post("installing") {
				next = 2
			}
		case s == 2 && cur.Phase == Installing && !held:
			if post("installed") {
				next = 3
			}
		case s == 3 && cur.Phase == FirstBoot:
			if post("booted") {
				next = 4
			}
		}
		c.mu.Lock()
		c.step[n.PrimaryMAC] = next
		c.mu.Unlock()
	}
}

func TestKill9ResumesAgainstRealBootServices(t *testing.T) {
	rig := newCrashRig(t)
	p := rig.p
	n1, n2, n3 := p.Nodes[0], p.Nodes[1], p.Nodes[2]
	mu := &rig.mu
	step := rig.step
	mu.Lock()
	rig.hold[n2.PrimaryMAC] = true // n2 stops at installing until the crash (no child runs yet)
	mu.Unlock()
	rig.startChild()
	waitUntil(t, "n1 booted and n2 installing", func() bool {
		ph := rig.phases()
		return ph[n1.PrimaryMAC].Phase == Booted && ph[n2.PrimaryMAC].Phase == Installing
	})
	rig.child.Process.Signal(os.Kill) // kill -9, at whatever the child was doing
	<-rig.exited
	// While nothing runs, n2 finishes its install: the event waits in the journal.
	mu.Lock()
	rig.hold[n2.PrimaryMAC] = false
	mu.Unlock()
	waitUntil(t, "n2 posted installed", func() bool { mu.Lock(); defer mu.Unlock(); return step[n2.PrimaryMAC] == 3 })
	before, _ := os.ReadFile(rig.ops)
	rig.startChild()
	select {
	case err := <-rig.exited:
		if err != nil {
			t.Fatalf("resumed run: %v\n%s", err, rig.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("resumed run did not finish; state %v\n%s", rig.phases(), rig.stderr)
	}
	for _, n := range []plan.Node{n1, n2, n3} {
		if ph := rig.phases()[n.PrimaryMAC]; ph.Phase != Booted {
			t.Errorf("%s: %s (%s)", n.Hostname, ph.Phase, ph.Reason)
		}
	}
	after, _ := os.ReadFile(rig.ops)
	resumed := strings.TrimPrefix(string(after), string(before))
	for _, line := range strings.Split(strings.TrimSpace(resumed), "\n") {
		mac, op, _ := strings.Cut(line, " ")
		switch mac {
		case n1.PrimaryMAC:
			t.Errorf("resumed run touched booted %s's BMC: %s", n1.Hostname, op)
		case n2.PrimaryMAC:
			if op != "setboot-disk" {
				t.Errorf("resumed run did %s on %s, which only needed its disk boot device (no reinstall)", op, n2.Hostname)
			}
		}
	}
	if !strings.Contains(resumed, n2.PrimaryMAC+" setboot-disk") {
		t.Errorf("n2's installed event (posted while the orchestrator was dead) was not acted on; ops after restart:\n%s", resumed)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never reached: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Killed again and again at arbitrary moments, the orchestrator still takes
// every node to booted, and never asks for a reinstall (which would mean it
// lost track of a node).
func TestKill9AtAnyMoment(t *testing.T) {
	rig := newCrashRig(t)
	kills := 0
	// The state is the snapshot and its journal: progress is a change in either.
	state := func() []byte {
		a, _ := os.ReadFile(filepath.Join(rig.dir, StateFile))
		b, _ := os.ReadFile(filepath.Join(rig.dir, JournalFile))
		return append(a, b...)
	}
	for {
		before := state()
		rig.startChild()
		// Kill right after the child made progress (its state changed), at
		// a varying delay: mid-operation, mid-write, mid-event batch.
		var exitErr error
		exited := false
		for !exited {
			select {
			case exitErr = <-rig.exited:
				exited = true
				continue
			case <-time.After(time.Millisecond):
			}
			if now := state(); !bytes.Equal(now, before) {
				time.Sleep(time.Duration(kills%4) * time.Millisecond)
				break
			}
		}
		if exited {
			if exitErr != nil {
				t.Fatalf("run %d: %v\n%s", kills+1, exitErr, rig.stderr)
			}
			break
		}
		rig.child.Process.Signal(os.Kill)
		<-rig.exited
		kills++
		if kills > 500 {
			t.Fatalf("no run finished after %d kills; state %v", kills, rig.phases())
		}
	}
	t.Logf("finished after %d kill -9s", kills)
	for _, n := range rig.p.Nodes {
		if ph := rig.phases()[n.PrimaryMAC]; ph.Phase != Booted {
			t.Errorf("%s: %s (%s)", n.Hostname, ph.Phase, ph.Reason)
		}
	}
	nodes, err := api.NewClient(rig.url).Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.InstallGeneration != 0 || n.Phase != api.PhaseBooted {
			t.Errorf("boot services' view of %s: generation %d, phase %s", n.Hostname, n.InstallGeneration, n.Phase)
		}
	}
	if kills == 0 {
		t.Error("the run finished before any kill; the test proved nothing")
	}
}

// tokenIn reads TOKEN='…' out of an install config's install.sh.
func tokenIn(t *testing.T, cfg []byte) string {
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
