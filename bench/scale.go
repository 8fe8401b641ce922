package main

import (
	"bufio"
	"context"
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
	"sort"
	"strings"
	"sync"
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

// Orchestrator scale: a whole bootstrap of a big rack against the real
// `racker serve`, with simulated nodes (scale_node.go) that take no time of
// their own, so the wall time is Racker's: the orchestrator's state
// machine and persistence, the BMC driver, the boot services' DHCP, HTTP
// and event journal, plus the bench's clients.

// scaleParallel is --parallel for the scale runs: a big rack is bootstrapped
// with many nodes in flight, and the default (20) would mostly measure
// how long a node waits for a slot.
const scaleParallel = 100

// scaleBMCInterval replaces the orchestrator's default spacing of BMC
// operations (50 ms, so a switch full of BMCs is not hit at once), which
// would otherwise be most of the figure.
const scaleBMCInterval = time.Millisecond

// scaleTimeouts bound each phase: the simulated nodes take no time of
// their own (a node's whole bootstrap takes about a second at 1,000 nodes).
var scaleTimeouts = orchestrator.Timeouts{BMC: 30 * time.Second, PXE: 30 * time.Second, Netboot: 30 * time.Second,
	Install: 30 * time.Second, Installed: 30 * time.Second, Boot: 30 * time.Second}

// scaleOutcome is one bootstrap's figures.
type scaleOutcome struct {
	nodes    int
	wall     time.Duration
	p50, p99 time.Duration // per node: BMC answered → booted
	serveRSS float64       // MiB, racker serve's VmHWM
	benchRSS float64       // MiB, this process's VmHWM during the run
	dhcp     int64         // DHCP exchanges attempted by nodes
	requests int64         // HTTP requests made by nodes
	saves    int           // orchestrator state saves
}

func benchScale(r *results, n *benchNet, work, racker string, short bool) error {
	fakeNodes, ipmiNodes := 1000, 100
	if short {
		fakeNodes, ipmiNodes = 100, 20
	}
	fk, err := scaleRun(n, filepath.Join(work, "fake"), racker, fakeNodes, false)
	if err != nil {
		return fmt.Errorf("%d nodes with fake:// BMCs: %w", fakeNodes, err)
	}
	ip, err := scaleRun(n, filepath.Join(work, "ipmi"), racker, ipmiNodes, true)
	if err != nil {
		return fmt.Errorf("%d nodes with IPMI BMCs: %w", ipmiNodes, err)
	}
	for _, o := range []struct {
		what string
		s    scaleOutcome
	}{{"fake:// BMCs", fk}, {"real IPMI BMCs (vbmc, UDP loopback)", ip}} {
		s := o.s
		sec := fmt.Sprintf("Orchestrator bootstrap, %d simulated nodes, %s", s.nodes, o.what)
		note := fmt.Sprintf("--parallel %d, BMC op spacing %s instead of 50 ms", scaleParallel, scaleBMCInterval)
		r.add(row{Section: sec, Figure: "wall time, all nodes booted", Unit: "s", Racker: s.wall.Seconds(),
			Note: fmt.Sprintf("%s; %d state saves", note, s.saves)})
		// The simulated nodes take no time of their own, so the time a node
		// holds one of the parallel slots is what Racker (and the bench's
		// clients) spend on it.
		inFlight := min(scaleParallel, s.nodes)
		r.add(row{Section: sec, Figure: "per-node overhead", Unit: "ms", Racker: ms(s.wall) * float64(inFlight) / float64(s.nodes),
			Note: fmt.Sprintf("wall × %d in flight / nodes; nodes made %d DHCP exchanges, %d HTTP requests", inFlight, s.dhcp, s.requests)})
		r.add(row{Section: sec, Figure: "per-node p50 BMC answered → booted", Unit: "ms", Racker: ms(s.p50), Note: fmt.Sprintf("p99 %.0f ms, from provision-log.jsonl", ms(s.p99))})
		r.add(row{Section: sec, Figure: "peak RSS of racker serve", Unit: "MiB", Racker: s.serveRSS})
		r.add(row{Section: sec, Figure: "peak RSS of the bench process", Unit: "MiB", Racker: s.benchRSS,
			Note: "orchestrator + BMCs + every simulated node's clients"})
	}
	return nil
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

// scaleRun bootstraps a rack of nodes nodes from nothing to "booted" and
// checks that every node got there through the boot services.
func scaleRun(n *benchNet, work, racker string, nodes int, realBMCs bool) (scaleOutcome, error) {
	out := scaleOutcome{nodes: nodes}
	oem, state, orchState := filepath.Join(work, "oem"), filepath.Join(work, "state"), filepath.Join(work, "orchestrator")
	if _, err := rackFiles(oem, nodes, n.srvMAC); err != nil {
		return out, err
	}
	plan, err := readPlan(racker, oem, state, n.subnet)
	if err != nil {
		return out, err
	}
	if len(plan) != nodes {
		return out, fmt.Errorf("the plan has %d nodes, want %d", len(plan), nodes)
	}
	// The boot-phase Ignition carries the cluster's SSH key.
	if b, err := exec.Command(racker, "factory", "gen-ssh-key", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01").CombinedOutput(); err != nil {
		return out, fmt.Errorf("while making the cluster's SSH key: %w: %s", err, b)
	}
	// Each node's HTTP requests come from its planned address.
	var addrs []netip.Addr
	for _, p := range plan {
		addrs = append(addrs, p.IP)
	}
	removeAddrs, err := addClientAddrs(n, addrs)
	if err != nil {
		return out, err
	}
	defer removeAddrs()

	rs, err := startServer("racker", n.srvNS, filepath.Join(work, "racker-serve.log"), rackerServeArgs(racker, oem, state, testosDir, n)...)
	if err != nil {
		return out, err
	}
	defer rs.stop()
	base := fmt.Sprintf("http://%s:8080", n.srvAddr.Addr())
	if err := waitHTTP(clientIn(n.cliNS), base+"/healthz", rs); err != nil {
		return out, err
	}
	var load *dhcpLoad
	if err := netenv.Do(n.cliNS, func() (err error) { load, err = newDHCPLoad(n.cliIf); return err }); err != nil {
		return out, err
	}
	defer load.Close()
	// DHCP is up once node 0's BMC gets its lease (the orchestrator skips
	// the journal's history on its first run, so this event is harmless).
	bmcMAC0, _ := net.ParseMAC(plan[0].BMCMAC)
	if err := waitDHCP(load, bmcMAC0, rs); err != nil {
		return out, err
	}

	// The virtual BMCs and simulated nodes stop when ctx ends; the run
	// returns once they have.
	var bg sync.WaitGroup
	defer bg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A failing simulated node ends the run at once (cancel), rather than
	// after the orchestrator's phase timeouts.
	sim := &scaleSim{ctx: ctx, cancel: cancel, base: base, ns: n.cliNS, dhcp: load}
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
	if realBMCs {
		open, err = startVBMCs(ctx, &bg, plan, simNodes, creds, quiet)
	} else {
		var forget func()
		open, forget = fakeOpener(plan, simNodes, creds, quiet)
		defer forget()
	}
	if err != nil {
		return out, err
	}

	// The orchestrator is the management node: it reads the management
	// views on the server namespace's loopback (they are refused to the
	// nodes' network).
	boot := api.NewClient("http://127.0.0.1:8080")
	boot.HTTP = clientIn(n.srvNS)
	resetPeakRSS()
	if path := os.Getenv("BENCH_SCALE_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(fmt.Sprintf("%s.%d", path, nodes))
		if err != nil {
			return out, err
		}
		defer stop()
	}
	start := time.Now()
	// OnChange runs after each save of the orchestrator's state (an
	// fsync'd atomic replace), on the loop goroutine that Run runs on.
	saves := 0
	res, err := orchestrator.Run(ctx, orchestrator.Config{StateDir: orchState, Nodes: specs, Boot: boot,
		OpenBMC: open, Parallel: scaleParallel, BMCInterval: scaleBMCInterval, OS: "testos current", Logger: quiet,
		// A node that stalls ends the bench with an error: no retries that
		// would hide a fault in the figures, no waiting for real servers' POST.
		Policy: orchestrator.Policy{OnFailure: orchestrator.Cancel}, Timeouts: scaleTimeouts,
		OnChange: func([]orchestrator.Node) { saves++ }})
	out.wall = time.Since(start)
	out.benchRSS = peakRSS(os.Getpid())
	out.serveRSS = peakRSS(rs.pid())
	out.dhcp, out.requests, out.saves = sim.dhcpTries.Load(), sim.requests.Load(), saves
	if errs := sim.firstErrors(); len(errs) > 0 {
		return out, fmt.Errorf("simulated nodes failed: %w", errors.Join(errs...))
	}
	if err != nil {
		return out, fmt.Errorf("the orchestrator: %w", err)
	}
	if err := checkScale(ctx, boot, res, simNodes); err != nil {
		return out, err
	}
	if out.p50, out.p99, err = nodeLatency(orchState, nodes); err != nil {
		return out, err
	}
	logger.Info("scale", "nodes", nodes, "real_bmcs", realBMCs, "wall", out.wall, "state_saves", saves, "p50", out.p50, "p99", out.p99,
		"serve_rss_mib", out.serveRSS, "bench_rss_mib", out.benchRSS)
	return out, nil
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

// nodeLatency reads the orchestrator's transition log: per node, the time
// from "BMC answered" to "booted".
func nodeLatency(orchState string, nodes int) (p50, p99 time.Duration, err error) {
	f, err := os.Open(filepath.Join(orchState, orchestrator.LogFile))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	reachable := map[string]time.Time{}
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var t orchestrator.Transition
		if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
			return 0, 0, fmt.Errorf("while reading %s: %w", orchestrator.LogFile, err)
		}
		switch t.To {
		case orchestrator.BMCReachable:
			reachable[t.MAC] = t.Time
		case orchestrator.Booted:
			lat = append(lat, t.Time.Sub(reachable[t.MAC]))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(lat) != nodes {
		return 0, 0, fmt.Errorf("%s has %d booted transitions, want %d", orchestrator.LogFile, len(lat), nodes)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], nil
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
		if load.exchange(mac, 500*time.Millisecond) {
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
