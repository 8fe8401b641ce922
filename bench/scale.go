package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/simulator/vbmc"
)

// A rack-scale bootstrap: `racker bootstrap`'s orchestrator against the real
// `racker serve`, a real virtual BMC per node (IPMI over UDP loopback) and
// simulated nodes (scale_node.go) that take a server's time, scaled, and
// download the whole OS image, scaled the same way (scale_config.go). It
// runs twice: at the shipped defaults, and at the best settings the bench
// can justify; scale_report.go turns each run into where the wall time
// went, the image-serving rate and the orchestrator's own share.

// scaleOutcome is one bootstrap's figures.
type scaleOutcome struct {
	name     string // "shipped defaults", "best settings"
	nodes    int
	parallel int
	interval time.Duration
	conc     int
	wall     time.Duration
	stats    orchestrator.Stats
	phases   phaseTimes
	dl       dlSummary
	serveRSS float64 // MiB, racker serve's VmHWM
	benchRSS float64 // MiB, this process's VmHWM during the run
	dhcp     int64   // DHCP exchanges attempted by nodes
	dhcpLate int64   // 1 s timeouts among them
	requests int64   // HTTP requests made by nodes
	bmcOps   int     // BMC operations through the limiter
}

func benchScale(r *results, n *benchNet, work, racker string, short bool) error {
	set, err := scaleFlags.settings(short)
	if err != nil {
		return err
	}
	rel, tail, err := scaleRelease(filepath.Join(work, "release"), set)
	if err != nil {
		return err
	}
	var outs []scaleOutcome
	for _, run := range set.Runs {
		o := scaleOutcome{name: "shipped defaults", nodes: set.Nodes, parallel: orchestrator.DefaultParallel,
			interval: orchestrator.DefaultBMCInterval, conc: orchestrator.DefaultBMCConcurrency}
		if run == "best" {
			o.name, o.parallel, o.interval, o.conc = "best settings", set.BestParallel, set.BestBMCInterval, set.BestBMCConcurrency
		}
		if err := scaleRun(n, filepath.Join(work, run), racker, rel, tail, set, &o); err != nil {
			return fmt.Errorf("%d nodes at the %s: %w", set.Nodes, o.name, err)
		}
		outs = append(outs, o)
	}
	reportScale(r, set, outs)
	return nil
}

// scaleRelease writes a release folder like the test OS's, whose image is
// the scaled size (random bytes: nothing compresses them on the way), and
// returns it with the image's last bytes.
func scaleRelease(dir string, set scaleSettings) (string, []byte, error) {
	cur := filepath.Join(dir, "current")
	if err := os.MkdirAll(cur, 0o755); err != nil {
		return "", nil, err
	}
	for _, f := range []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"} {
		b, err := os.ReadFile(filepath.Join(testosDir, "current", f))
		if err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(filepath.Join(cur, f), b, 0o644); err != nil {
			return "", nil, err
		}
	}
	image := make([]byte, set.imageBytes())
	rand.Read(image)
	if err := os.WriteFile(filepath.Join(cur, imageName), image, 0o644); err != nil {
		return "", nil, err
	}
	// racker serve offers only a signed release (issue 12).
	if err := signRelease(cur, imageName); err != nil {
		return "", nil, err
	}
	return dir, image[len(image)-min(len(image), 64):], nil
}

// planNode is what the bench needs of Racker's plan for a node.
type planNode struct {
	PrimaryMAC string     `json:"primary_mac"`
	BMCMAC     string     `json:"bmc_mac"`
	Hostname   string     `json:"hostname"`
	Type       string     `json:"type"`
	Role       string     `json:"role"`
	IP         netip.Addr `json:"ip"`
}

func readPlan(racker, oem, state string, subnet netip.Prefix) ([]planNode, error) {
	out, err := exec.Command(racker, "plan", "-o", "json", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--subnet", subnet.String()).Output()
	if err != nil {
		return nil, fmt.Errorf("while planning the scale rack: %w", err)
	}
	var p struct {
		Nodes []planNode `json:"nodes"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("while reading the scale rack's plan: %w", err)
	}
	return p.Nodes, nil
}

// scaleRun bootstraps a rack of set.Nodes nodes from nothing to "booted"
// at o's pace, and checks that every node got there through the boot
// services.
func scaleRun(n *benchNet, work, racker, release string, tail []byte, set scaleSettings, o *scaleOutcome) error {
	oem, state, orchState := filepath.Join(work, "oem"), filepath.Join(work, "state"), filepath.Join(work, "orchestrator")
	if _, err := rackFiles(oem, o.nodes, n.srvMAC); err != nil {
		return err
	}
	plan, err := readPlan(racker, oem, state, n.subnet)
	if err != nil {
		return err
	}
	if len(plan) != o.nodes {
		return fmt.Errorf("the plan has %d nodes, want %d", len(plan), o.nodes)
	}
	// The boot-phase Ignition carries the cluster's SSH key.
	if b, err := exec.Command(racker, "factory", "gen-ssh-key", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01").CombinedOutput(); err != nil {
		return fmt.Errorf("while making the cluster's SSH key: %w: %s", err, b)
	}
	// Each node's HTTP requests come from its planned address.
	var addrs []netip.Addr
	for _, p := range plan {
		addrs = append(addrs, p.IP)
	}
	removeAddrs, err := addClientAddrs(n, addrs)
	if err != nil {
		return err
	}
	defer removeAddrs()

	rs, err := startServer("racker", n.srvNS, filepath.Join(work, "racker-serve.log"), rackerServeArgs(racker, oem, state, release, n)...)
	if err != nil {
		return err
	}
	defer rs.stop()
	base := fmt.Sprintf("http://%s:8080", n.srvAddr.Addr())
	if err := waitHTTP(clientIn(n.cliNS), base+"/healthz", rs); err != nil {
		return err
	}
	var load *dhcpLoad
	if err := netenv.Do(n.cliNS, func() (err error) { load, err = newDHCPLoad(n.cliIf); return err }); err != nil {
		return err
	}
	defer load.Close()
	// DHCP is up once node 0's BMC gets its lease (the orchestrator skips
	// the journal's history on its first run, so this event is harmless).
	bmcMAC0, _ := net.ParseMAC(plan[0].BMCMAC)
	if err := waitDHCP(load, bmcMAC0, rs); err != nil {
		return err
	}

	// The whole run is bounded: a stall is a bug, and it fails the bench
	// instead of waiting for the shipped phase timeouts (minutes).
	budget := 10*scaleBound(set, *o) + 2*time.Minute
	var bg sync.WaitGroup
	defer bg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	// A failing simulated node ends the run at once (cancel), rather than
	// after the orchestrator's phase timeouts.
	sim := &scaleSim{ctx: ctx, cancel: cancel, base: base, ns: n.cliNS, dhcp: load, set: set,
		image: "/assets/testos/" + benchVersion + "/" + imageName, tail: tail}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	simNodes := map[string]*simNode{}
	var specs []orchestrator.NodeSpec
	for _, p := range plan {
		sn := &simNode{sim: sim, mac: p.PrimaryMAC, host: p.Hostname, ip: p.IP}
		simNodes[p.PrimaryMAC] = sn
		specs = append(specs, orchestrator.NodeSpec{PrimaryMAC: p.PrimaryMAC, BMCMAC: p.BMCMAC, Hostname: p.Hostname, Role: p.Role, Type: p.Type})
	}
	creds := inventory.Credentials{User: "bench", Password: "bench-password"}
	var open orchestrator.BMCOpener
	if set.BMC == "ipmi" {
		open, err = startVBMCs(ctx, &bg, plan, simNodes, creds, quiet)
	} else {
		var forget func()
		open, forget = fakeOpener(plan, simNodes, creds, quiet)
		defer forget()
	}
	if err != nil {
		return err
	}
	var ops atomic.Int64
	counted := func(ctx context.Context, s orchestrator.NodeSpec) (orchestrator.BMC, error) {
		ops.Add(1)
		return open(ctx, s)
	}

	// The orchestrator is the management node: it reads the management
	// views on the server namespace's loopback (they are refused to the
	// nodes' network).
	boot := api.NewClient("http://127.0.0.1:8080")
	boot.HTTP = clientIn(n.srvNS)
	resetPeakRSS()
	if path := os.Getenv("BENCH_SCALE_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(fmt.Sprintf("%s.%s", path, strings.ReplaceAll(o.name, " ", "-")))
		if err != nil {
			return err
		}
		defer stop()
	}
	interval := o.interval
	if interval == 0 {
		interval = -1 // none
	}
	logger.Info("scale: bootstrap starts", "run", o.name, "nodes", o.nodes, "parallel", o.parallel, "bmc_interval", o.interval,
		"bmc_concurrency", o.conc, "bmcs", set.BMC, "scale", set.describe(), "budget", budget)
	start := time.Now()
	res, err := orchestrator.Run(ctx, orchestrator.Config{StateDir: orchState, Nodes: specs, Boot: boot,
		OpenBMC: counted, Parallel: o.parallel, BMCInterval: interval, BMCConcurrency: o.conc, OS: "testos current", Logger: quiet,
		// A node that stalls or fails ends the bench with an error: no
		// retries that would hide a fault in the figures.
		Policy: orchestrator.Policy{OnFailure: orchestrator.Cancel}})
	o.wall = time.Since(start)
	bmc.CloseIdleSessions() // while the virtual BMCs still answer
	o.stats = res.Stats
	o.benchRSS = peakRSS(os.Getpid())
	o.serveRSS = peakRSS(rs.pid())
	o.dhcp, o.dhcpLate, o.requests, o.bmcOps = sim.dhcpTries.Load(), sim.dhcpTimeouts.Load(), sim.requests.Load(), int(ops.Load())
	o.dl = sim.dl.summary()
	if errs := sim.firstErrors(); len(errs) > 0 {
		return fmt.Errorf("simulated nodes failed: %w", errors.Join(errs...))
	}
	if err != nil {
		return fmt.Errorf("the orchestrator: %w", err)
	}
	if err := checkScale(ctx, boot, res, simNodes); err != nil {
		return err
	}
	if o.phases, err = readPhaseTimes(orchState, o.nodes); err != nil {
		return err
	}
	logger.Info("scale: bootstrap done", "run", o.name, "wall", o.wall.Round(time.Millisecond), "loop_busy", o.stats.Busy.Round(time.Millisecond),
		"commits", o.stats.Commits, "syncs", o.stats.Syncs, "commit_time", o.stats.CommitTime.Round(time.Millisecond), "image_GB", float64(o.dl.bytes)/1e9,
		"bmc_ops", o.bmcOps, "serve_rss_mib", o.serveRSS, "bench_rss_mib", o.benchRSS)
	return nil
}

// checkScale: every node booted, each netbooted first (the PXE flag went
// through its BMC), installed exactly once and booted from disk, and the
// boot services agree (phase booted, target disk).
func checkScale(ctx context.Context, boot *api.Client, res orchestrator.Result, nodes map[string]*simNode) error {
	if len(res.Nodes) != len(nodes) {
		return fmt.Errorf("the orchestrator reports %d nodes, want %d", len(res.Nodes), len(nodes))
	}
	for _, rn := range res.Nodes {
		if rn.Phase != orchestrator.Booted {
			return fmt.Errorf("node %s (%s) ended %s: %s", rn.Hostname, rn.PrimaryMAC, rn.Phase, rn.Reason)
		}
		installs, booted, first := nodes[rn.PrimaryMAC].counts()
		if installs != 1 || booted < 1 || first != devPXE {
			return fmt.Errorf("node %s (%s): %d installs, %d disk boots, first boot from %q; want 1, at least 1, pxe",
				rn.Hostname, rn.PrimaryMAC, installs, booted, first)
		}
	}
	remote, err := boot.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("while reading the boot services' nodes: %w", err)
	}
	seen := 0
	for _, rn := range remote {
		if nodes[rn.PrimaryMAC] == nil {
			continue
		}
		seen++
		if rn.Phase != api.PhaseBooted || rn.Target != api.TargetDisk {
			return fmt.Errorf("the boot services see node %s (%s) %s with target %s, want booted and disk", rn.Hostname, rn.PrimaryMAC, rn.Phase, rn.Target)
		}
	}
	if seen != len(nodes) {
		return fmt.Errorf("the boot services know %d of the %d nodes", seen, len(nodes))
	}
	return nil
}

// fakeOpener opens each node's BMC through provisioner/bmc's fake://
// driver (a fake: in-memory BMCs, documented as such in the results) and
// hooks the simulated node to its power actions.
func fakeOpener(plan []planNode, nodes map[string]*simNode, creds inventory.Credentials, log *slog.Logger) (open orchestrator.BMCOpener, forget func()) {
	names := map[string]string{}
	for _, p := range plan {
		name := fmt.Sprintf("scale%d-%s", os.Getpid(), strings.ReplaceAll(p.PrimaryMAC, ":", "")) // a URL host: no colons
		names[p.PrimaryMAC] = name
		bmc.ForgetFake(name)
		f := bmc.Fake(name)
		sn := nodes[p.PrimaryMAC]
		sn.reboot = func() { sn.start(firmwareDevice(f)) }
	}
	inner := orchestrator.ControllerOpener(func(_ context.Context, s orchestrator.NodeSpec) (string, error) {
		return "fake://" + names[s.PrimaryMAC], nil
	}, bmc.Options{Credentials: creds, Logger: log})
	open = func(ctx context.Context, s orchestrator.NodeSpec) (orchestrator.BMC, error) {
		b, err := inner(ctx, s)
		if err != nil {
			return nil, err
		}
		return fakeHooked{BMC: b, fake: bmc.Fake(names[s.PrimaryMAC]), node: nodes[s.PrimaryMAC]}, nil
	}
	forget = func() {
		for _, name := range names {
			bmc.ForgetFake(name)
		}
	}
	return open, forget
}

// startVBMCs runs one real virtual BMC per node (go-ipmi server over UDP on
// 127.0.0.1, its own port) until ctx ends, and returns an opener through
// Racker's ipmi:// driver.
func startVBMCs(ctx context.Context, bg *sync.WaitGroup, plan []planNode, nodes map[string]*simNode, creds inventory.Credentials, log *slog.Logger) (orchestrator.BMCOpener, error) {
	urls := map[string]string{}
	for _, p := range plan {
		listening := make(chan netip.AddrPort, 1)
		m := newSimMachine(nodes[p.PrimaryMAC])
		bg.Add(1)
		go func() {
			defer bg.Done()
			err := vbmc.Run(ctx, vbmc.Config{Name: p.Hostname, Machine: m, Static: netip.MustParsePrefix("127.0.0.1/8"), Port: -1,
				User: creds.User, Password: creds.Password, Logger: log.With("bmc", p.Hostname),
				OnListen: func(a netip.AddrPort) {
					select {
					case listening <- a:
					default:
					}
				}})
			if err != nil && ctx.Err() == nil {
				log.Error("virtual BMC stopped", "node", p.Hostname, "err", err)
			}
		}()
		select {
		case a := <-listening:
			urls[p.PrimaryMAC] = "ipmi://" + a.String()
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("the virtual BMC of %s did not start", p.Hostname)
		}
	}
	return orchestrator.ControllerOpener(func(_ context.Context, s orchestrator.NodeSpec) (string, error) {
		return urls[s.PrimaryMAC], nil
	}, bmc.Options{Credentials: creds, Logger: log}), nil
}

// addClientAddrs puts addrs on the client namespace's interface (in the
// bench's subnet) and returns a function that removes them.
func addClientAddrs(n *benchNet, addrs []netip.Addr) (func(), error) {
	target, err := netns.GetFromPath(netenv.NamespacePath(n.cliNS))
	if err != nil {
		return nil, fmt.Errorf("while opening namespace %s: %w", n.cliNS, err)
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil, fmt.Errorf("while opening netlink in %s: %w", n.cliNS, err)
	}
	link, err := h.LinkByName(n.cliIf)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("while finding %s in %s: %w", n.cliIf, n.cliNS, err)
	}
	var added []*netlink.Addr
	remove := func() {
		for _, a := range added {
			if err := h.AddrDel(link, a); err != nil {
				logger.Warn("could not remove a node address from the client namespace", "addr", a.IPNet, "err", err)
			}
		}
		h.Close()
	}
	for _, ip := range addrs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(n.subnet.Bits(), 32)}}
		if err := h.AddrAdd(link, a); err != nil {
			remove()
			return nil, fmt.Errorf("while adding %s to %s in %s: %w", ip, n.cliIf, n.cliNS, err)
		}
		added = append(added, a)
	}
	return remove, nil
}

// waitDHCP waits until the server under test answers a DHCP exchange.
func waitDHCP(load *dhcpLoad, mac net.HardwareAddr, s *server) error {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if ok, _ := load.exchange(mac, 500*time.Millisecond, 500*time.Millisecond); ok {
			return nil
		}
	}
	b, _ := os.ReadFile(s.log)
	return fmt.Errorf("%s never answered DHCP; its log:\n%s", s.name, b)
}

// resetPeakRSS restarts this process's VmHWM (Linux ≥ 4.0), so the bench
// process's figure is this run's, not an earlier section's.
func resetPeakRSS() {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		logger.Warn("cannot reset the peak RSS; the bench's figure includes earlier sections", "err", err)
	}
}

// cpuProfile profiles this process (orchestrator, BMCs, simulated nodes)
// into path until stop; BENCH_SCALE_CPUPROFILE=PREFIX asks for it, one file
// per run (PREFIX.NODES), to see where a bootstrap's time goes.
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("while starting the CPU profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
