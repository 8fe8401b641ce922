package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/racker/racker/provisioner/orchestrator"
)

// phaseTimes is how long the run's nodes spent in each phase, summed over
// nodes, from the orchestrator's transition log: where the wall time went.
type phaseTimes struct {
	total map[orchestrator.Phase]time.Duration
	nodes int
}

// readPhaseTimes reads provision-log.jsonl: each transition ends the time
// its node spent in the phase it left. A node's time in pending runs from
// the run's first transition (every node starts pending together).
func readPhaseTimes(orchState string, nodes int) (phaseTimes, error) {
	pt := phaseTimes{total: map[orchestrator.Phase]time.Duration{}, nodes: nodes}
	f, err := os.Open(filepath.Join(orchState, orchestrator.LogFile))
	if err != nil {
		return pt, err
	}
	defer f.Close()
	entered := map[string]time.Time{}
	var first time.Time
	booted := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var t orchestrator.Transition
		if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
			return pt, fmt.Errorf("while reading %s: %w", orchestrator.LogFile, err)
		}
		if first.IsZero() {
			first = t.Time
		}
		since, ok := entered[t.MAC]
		if !ok {
			since = first
		}
		pt.total[t.From] += t.Time.Sub(since)
		entered[t.MAC] = t.Time
		if t.To == orchestrator.Booted {
			booted++
		}
	}
	if err := sc.Err(); err != nil {
		return pt, err
	}
	if booted != nodes {
		return pt, fmt.Errorf("%s has %d booted transitions, want %d", orchestrator.LogFile, booted, nodes)
	}
	return pt, nil
}

func (pt phaseTimes) mean(p orchestrator.Phase) time.Duration {
	return pt.total[p] / time.Duration(max(pt.nodes, 1))
}

// inSlots is the time nodes held a --parallel slot, summed.
func (pt phaseTimes) inSlots() time.Duration {
	var d time.Duration
	for p, t := range pt.total {
		if p != orchestrator.Pending {
			d += t
		}
	}
	return d
}

// scaleBound is the least wall time the run could take: the BMC spacing
// (three operations per node, one start every interval, rack-wide) or the
// simulated hardware (rounds of --parallel nodes, each taking the scaled
// node time), whichever is longer.
func scaleBound(set scaleSettings, o scaleOutcome) time.Duration {
	bmc := time.Duration(3*o.nodes) * o.interval
	rounds := time.Duration(math.Ceil(float64(o.nodes) / float64(o.parallel)))
	return max(bmc, rounds*set.scaled(set.nodeTime()))
}

// phaseWhat says what a node does in each phase of the scaled run.
func phaseWhat(set scaleSettings) []struct {
	phase orchestrator.Phase
	what  string
	floor time.Duration // simulated hardware time in the phase
} {
	return []struct {
		phase orchestrator.Phase
		what  string
		floor time.Duration
	}{
		{orchestrator.Pending, "waiting for a --parallel slot", 0},
		{orchestrator.BMCCheck, "BMC check: the BMC spacing, then IPMI power status", 0},
		{orchestrator.BMCReachable, "PXE: the BMC spacing, then IPMI power status, boot device, power on", 0},
		{orchestrator.PXERequested, "firmware POST, the PXE ROM's DHCP, iPXE's scripts", set.scaled(set.POST)},
		{orchestrator.Netbooting, "the live system's boot and its install Ignition", set.scaled(set.Live)},
		{orchestrator.Installing, fmt.Sprintf("the image download (%.1f MB) and the install's write", float64(set.imageBytes())/1e6), set.scaled(set.Install)},
		{orchestrator.Installed, "boot device disk: the BMC spacing, then IPMI", 0},
		{orchestrator.FirstBoot, "reboot: POST and the installed system's first boot", set.scaled(set.POST + set.Boot)},
		{orchestrator.AwaitingDiskBoot, "booted before the disk boot device was set", 0},
	}
}

// reportScale turns the runs into rows: the wall time against its bound,
// where it went, the image serving, the orchestrator's own share; then
// the published concurrency defaults of Metal3 and Ironic beside Racker's,
// as arithmetic over the run's real-world assumptions.
func reportScale(r *results, set scaleSettings, outs []scaleOutcome) {
	var best *scaleOutcome
	for i, o := range outs {
		if o.name == "best settings" {
			best = &outs[i]
		}
		sec := fmt.Sprintf("Bootstrap of %s simulated nodes at the %s (--parallel %d, --bmc-interval %s, --bmc-concurrency %d; %s BMCs); %s",
			thousands(float64(o.nodes)), o.name, o.parallel, o.interval, o.conc, bmcKind(set), set.describe())
		bound := scaleBound(set, o)
		r.add(row{Section: sec, Figure: "wall time, every node booted", Unit: "s", Racker: o.wall.Seconds(), Peer: bound.Seconds(),
			PeerIs: fmt.Sprintf("bound: max(%s BMC operations × %s, %d rounds × %s of node time)", thousands(float64(3*o.nodes)), o.interval,
				int(math.Ceil(float64(o.nodes)/float64(o.parallel))), set.scaled(set.nodeTime())),
			Headline: true, Note: "ratio: the bound's share of the wall time"})
		slots := o.phases.inSlots()
		for _, ph := range phaseWhat(set) {
			t := o.phases.total[ph.phase]
			if t == 0 {
				continue
			}
			note := "waiting, not in a slot"
			if ph.phase != orchestrator.Pending {
				note = fmt.Sprintf("%.0f%% of the time nodes held a slot", 100*float64(t)/float64(slots))
			}
			x := row{Section: sec, Figure: "per node, " + string(ph.phase) + ": " + ph.what, Unit: "s", Racker: o.phases.mean(ph.phase).Seconds(), Note: note}
			if ph.floor > 0 {
				x.Peer, x.PeerIs = ph.floor.Seconds(), "simulated hardware time"
			}
			r.add(x)
		}
		if o.dl.busy > 0 {
			rate := float64(o.dl.bytes) / (1 << 20) / o.dl.busy.Seconds()
			r.add(row{Section: sec, Figure: "image-serving rate while any download ran", Unit: "MiB/s", Racker: rate, Headline: o.name == "best settings",
				Note: fmt.Sprintf("%.1f GB in %d downloads, up to %d at once, %.2f s each on average", float64(o.dl.bytes)/1e9, o.dl.count, o.dl.max,
					(o.dl.sum / time.Duration(max(o.dl.count, 1))).Seconds())})
		}
		r.add(row{Section: sec, Figure: "orchestrator's own time (its loop busy: events, scheduling, state journal)", Unit: "s",
			Racker: o.stats.Busy.Seconds(), Peer: 0.1 * o.wall.Seconds(), PeerIs: "limit: 10% of the wall time", Headline: o.name == "shipped defaults",
			Note: fmt.Sprintf("%.1f%% of the wall time", 100*o.stats.Busy.Seconds()/o.wall.Seconds())})
		r.add(row{Section: sec, Figure: "state journal lines written", Unit: "",
			Racker: float64(o.stats.Commits), Note: fmt.Sprintf("%.2f s in all; %d fdatasyncs (before operations start) took %.2f s; %d snapshots %.2f s",
				o.stats.CommitTime.Seconds(), o.stats.Syncs, o.stats.SyncTime.Seconds(), o.stats.Snapshots, o.stats.SnapshotTime.Seconds())})
		r.add(row{Section: sec, Figure: "BMC operations", Unit: "", Racker: float64(o.bmcOps), Peer: float64(3 * o.nodes), PeerIs: "3 per node",
			Note: fmt.Sprintf("nodes made %d DHCP exchanges (%d 1 s timeouts) and %d HTTP requests", o.dhcp, o.dhcpLate, o.requests)})
		r.add(row{Section: sec, Figure: "peak RSS of racker serve", Unit: "MiB", Racker: o.serveRSS})
		r.add(row{Section: sec, Figure: "peak RSS of the bench process", Unit: "MiB", Racker: o.benchRSS,
			Note: "orchestrator, a virtual BMC and the clients of every simulated node"})
	}
	reportPeers(r, set, best)
}

func bmcKind(set scaleSettings) string {
	if set.BMC == "ipmi" {
		return "virtual IPMI"
	}
	return "in-memory fake"
}

// Published defaults of the tools a rack's owner would pick instead
// (checked in their sources, see docs/benchmarks.md):
//   - Metal3's baremetal-operator, docs/configuration.md: PROVISIONING_LIMIT,
//     "the desired maximum number of hosts that could be (de)provisioned
//     simultaneously", default 20;
//   - OpenStack Ironic, ironic/conf/conductor.py: [conductor]
//     max_concurrent_deploy, default 250; ironic/conf/ipmi.py: [ipmi]
//     min_command_interval, "minimum time, in seconds, between IPMI
//     operations sent to a server", default 5.
const (
	metal3ProvisioningLimit  = 20
	ironicMaxConcurrent      = 250
	ironicMinCommandInterval = 5 * time.Second
	// tenGbE is a management node's link, 10 Gbit/s, in bytes per second.
	tenGbE = 1.25e9
)

// reportPeers puts Racker's defaults beside Metal3's and Ironic's for a
// rack of the run's size of real servers: rounds of concurrent nodes, each
// round the real node time plus its share of serving the image, which no
// tool serves faster than the management node's link (10 GbE assumed) or
// than Racker served it in the best-settings run.
func reportPeers(r *results, set scaleSettings, best *scaleOutcome) {
	n := set.Nodes
	serve := tenGbE
	what := "10 GbE"
	if best != nil && best.dl.busy > 0 {
		if measured := float64(best.dl.bytes) / best.dl.busy.Seconds(); measured < serve {
			serve, what = measured, "the rate Racker served it at in the best-settings run"
		}
	}
	image := float64(set.ImageMB) * 1e6
	wall := func(parallel int, perNodeExtra time.Duration) time.Duration {
		rounds := math.Ceil(float64(n) / float64(parallel))
		inRound := min(parallel, n)
		download := time.Duration(image * float64(inRound) / serve * float64(time.Second))
		return time.Duration(rounds) * (set.nodeTime() + download + perNodeExtra)
	}
	sec := fmt.Sprintf("%s real servers: what each tool's default concurrency means (arithmetic, not measured: %s of node time, a %d MB image served at %s)",
		thousands(float64(n)), set.nodeTime(), set.ImageMB, what)
	floor := time.Duration(image * float64(n) / serve * float64(time.Second))
	add := func(fig string, racker, peer time.Duration, peerIs, note string) {
		r.add(row{Section: sec, Figure: fig, Unit: "min", Racker: racker.Minutes(), Peer: peer.Minutes(), PeerIs: peerIs, Note: note})
	}
	add(fmt.Sprintf("Racker's --parallel %d vs Metal3's PROVISIONING_LIMIT %d", orchestrator.DefaultParallel, metal3ProvisioningLimit),
		wall(orchestrator.DefaultParallel, 0), wall(metal3ProvisioningLimit, 0), "Metal3 default",
		fmt.Sprintf("%d rounds each", int(math.Ceil(float64(n)/float64(orchestrator.DefaultParallel)))))
	ironicExtra := 2 * ironicMinCommandInterval // at least 3 IPMI commands per node, 5 s apart
	add(fmt.Sprintf("Racker's best settings (--parallel %d) vs Ironic's max_concurrent_deploy %d", set.BestParallel, ironicMaxConcurrent),
		wall(set.BestParallel, 0), wall(ironicMaxConcurrent, ironicExtra), "Ironic default",
		fmt.Sprintf("Ironic: plus [ipmi] min_command_interval %s between the ≥3 IPMI commands of each node", ironicMinCommandInterval))
	add("floor for any tool: every image through the management node's link", floor, 0, "", fmt.Sprintf("%s × %d MB at %s", thousands(float64(n)), set.ImageMB, what))
}
