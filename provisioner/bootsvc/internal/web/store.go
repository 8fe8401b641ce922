package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/internal/atomicfile"
	"github.com/racker/racker/provisioner/plan"
)

// TargetsFile keeps each node's target and install generation, inside the
// state folder. It changes only on installed callbacks and reinstalls, so it
// is replaced atomically as a whole; phases are rebuilt from the journal.
const TargetsFile = "bootsvc-targets.json"

// targetsOnDisk is TargetsFile. Seq is the last journal event applied to
// it: on start, installed/booted events after Seq are applied again, so a
// crash between the journal write and the file write loses no target.
type targetsOnDisk struct {
	Seq   uint64                `json:"seq"`
	Nodes map[string]nodeTarget `json:"nodes"`
}

type nodeTarget struct {
	Target            api.Target `json:"target"`
	InstallGeneration int        `json:"install_generation"`
	WipeAll           bool       `json:"wipe_all"`
	// The boot window and the generation's secret (window.go): the file
	// is therefore mode 0600.
	Token         string    `json:"token,omitempty"`
	WindowUntil   time.Time `json:"window_until,omitzero"`
	InstallServed bool      `json:"install_served,omitempty"`
	BootServed    bool      `json:"boot_served,omitempty"`
}

type nodeView struct {
	nodeTarget
	phase       api.Phase
	lastEvent   api.EventKind
	lastEventAt time.Time
}

// store is the boot services' memory: the plan's nodes, what each node
// should do on its next netboot, what was last seen of it, and the journal.
// It is the api.Recorder the DHCP and TFTP servers report to.
type store struct {
	dir     string
	log     *slog.Logger
	metrics *api.Metrics
	leaseOf func(mac string) (netip.Addr, bool)
	now     func() time.Time
	window  time.Duration
	// strangers bounds what machines outside the plan, and nodes outside
	// their window, get recorded (TFTP transfers, iPXE, machine_seen):
	// one event per kind and MAC per 10 s, 100 a second overall.
	strangers *limiter

	mu      sync.Mutex
	plan    *plan.Plan
	byMAC   map[string]plan.Node // primary MAC → planned node (members only)
	planned map[string]bool      // every planned machine's MAC: nodes and BMCs (the journal keeps their history longest)
	nodes   map[string]*nodeView // primary MAC → state; absent = install, unknown
	applied uint64               // last journal seq reflected in nodes
	// replaying: the journal is being read back at start (its installs
	// were timed by the process that recorded them).
	replaying bool

	j *journal
}

func openStore(dir string, p *plan.Plan, leaseOf func(string) (netip.Addr, bool), m *api.Metrics, log *slog.Logger,
	now func() time.Time, window time.Duration) (*store, error) {
	s := &store{dir: dir, log: log, metrics: m, leaseOf: leaseOf, nodes: map[string]*nodeView{}, now: now, window: window,
		strangers: newLimiter(10*time.Second, 100)}
	s.setPlan(p)
	var onDisk targetsOnDisk
	dirty0 := false // targets of retired machines left out
	b, err := os.ReadFile(filepath.Join(dir, TargetsFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading node targets: %w", err)
	default:
		if err := json.Unmarshal(b, &onDisk); err != nil {
			return nil, fmt.Errorf("reading node targets %s: %w", filepath.Join(dir, TargetsFile), err)
		}
	}
	for mac, t := range onDisk.Nodes {
		if p.IsRetired(mac) {
			dirty0 = true
			continue
		}
		s.nodes[mac] = &nodeView{nodeTarget: t, phase: api.PhaseUnknown}
	}
	s.applied = onDisk.Seq
	fileSeq := onDisk.Seq
	dirty := dirty0
	s.replaying = true
	j, err := openJournal(filepath.Join(dir, EventsFile), log, defaultKeep(s.isPlanned, now), func(ev api.Event) {
		if s.apply(ev, ev.Seq > fileSeq) {
			dirty = true
		}
	})
	s.replaying = false
	if err != nil {
		return nil, err
	}
	s.j = j
	j.commit = s.committed
	if dirty {
		s.mu.Lock()
		err := s.saveLocked()
		s.mu.Unlock()
		if err != nil {
			j.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *store) setPlan(p *plan.Plan) {
	by := map[string]plan.Node{}
	planned := map[string]bool{}
	for _, n := range p.Nodes {
		by[n.PrimaryMAC] = n
	}
	for _, n := range p.Servers() {
		planned[n.PrimaryMAC] = true
		if n.BMCMAC != "" {
			planned[n.BMCMAC] = true
		}
	}
	s.mu.Lock()
	s.plan, s.byMAC, s.planned = p, by, planned
	s.forgetRetiredLocked()
	s.mu.Unlock()
}

// forgetRetiredLocked drops the targets of machines that left the rack
// (racker retire, racker replace): a MAC that comes back later is a new
// machine and installs.
func (s *store) forgetRetiredLocked() {
	dropped := false
	for _, mac := range s.plan.Retired {
		if _, ok := s.nodes[mac]; ok {
			delete(s.nodes, mac)
			dropped = true
		}
	}
	if !dropped || s.j == nil {
		return // at start, openStore saves once the targets are read
	}
	if err := s.saveLocked(); err != nil {
		s.log.Error("could not drop the targets of retired machines (they are dropped again at the next start)", "err", err)
	}
}

// isPlanned says whether mac is a planned node's or BMC's.
func (s *store) isPlanned(mac string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.planned[mac]
}

// nodeByNIC returns the planned member node with this primary or secondary
// MAC: iPXE names the MAC of its first NIC, which on some servers is the
// secondary one.
func (s *store) nodeByNIC(mac string) (plan.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.byMAC[mac]; ok {
		return n, true
	}
	for _, n := range s.plan.Nodes {
		if n.SecondaryMAC == mac {
			return n, true
		}
	}
	return plan.Node{}, false
}

// node returns the planned member node with this primary MAC.
func (s *store) node(mac string) (plan.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byMAC[mac]
	return n, ok
}

// Record implements api.Recorder for the DHCP and TFTP servers (and the
// web server's own observations): it marks what a node did outside its
// boot window as unsolicited and caps what unauthenticated input may
// write, then journals the event.
func (s *store) Record(ev api.Event) {
	s.mu.Lock()
	ev.Unsolicited = s.unsolicitedLocked(ev)
	stranger := ev.Unsolicited || !s.planned[ev.MAC]
	s.mu.Unlock()
	if stranger && ev.Kind != api.KindForbidden { // refusals have a limiter of their own
		if ok, _ := s.strangers.allow(string(ev.Kind)+" "+ev.MAC, s.now()); !ok {
			s.metrics.Dropped("event_rate_limited")
			return
		}
	}
	ev.Message = capString(ev.Message, maxObservedMessage)
	ev.Source = capString(ev.Source, maxSource)
	ev.MAC = capString(ev.MAC, maxSource)
	if _, err := s.j.append(ev); err != nil {
		s.log.Error("event lost", "kind", ev.Kind, "mac", ev.MAC, "err", err)
	}
}

// committed runs on the journal's writer after each durable batch.
func (s *store) committed(evs []api.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty := false
	for _, ev := range evs {
		s.metrics.Event(ev.Kind)
		if s.applyLocked(ev, true) {
			dirty = true
		}
	}
	if dirty {
		if err := s.saveLocked(); err != nil {
			// The journal has the event; the next start re-applies it.
			s.log.Error("could not persist node targets; they will be rebuilt from the journal on restart", "err", err)
		}
	}
}

func (s *store) apply(ev api.Event, targets bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(ev, targets)
}

// applyLocked updates a node's view from one event and reports whether its
// persisted target changed.
func (s *store) applyLocked(ev api.Event, targets bool) bool {
	if ev.Seq > s.applied {
		s.applied = ev.Seq
	}
	phase, ok := phaseAfter(ev)
	if !ok || ev.Unsolicited {
		return false // unsolicited: recorded for people, never a phase
	}
	v := s.nodes[ev.MAC]
	if v == nil {
		if _, planned := s.byMAC[ev.MAC]; !planned {
			return false // a BMC, an unknown machine: not a node's phase
		}
		v = &nodeView{nodeTarget: nodeTarget{Target: api.TargetInstall}}
		s.nodes[ev.MAC] = v
	}
	// A matchbox install calls nothing back: the installed system's first
	// fetch of its own config, inside the window Racker opened for the
	// install, is its boot.
	booted := ev.Kind == api.KindBooted
	if ev.Kind == api.KindIgnition && ev.Ignition == api.IgnitionMatchboxNode && !ev.Time.After(v.WindowUntil) {
		booted, phase = true, api.PhaseBooted
	}
	if phase != "" {
		v.phase = phase
	}
	s.metrics.NodeEvent(ev.MAC, phase, ev.Kind, ev.Time, !s.replaying)
	v.lastEvent, v.lastEventAt = ev.Kind, ev.Time
	changed := false
	// The node booted its installed system: its window has served its purpose.
	if targets && booted && !v.WindowUntil.IsZero() {
		v.WindowUntil = time.Time{}
		changed = true
	}
	// No netboot loops: once a node has installed (or booted from disk),
	// its next netboot boots from disk until someone asks for a reinstall.
	if targets && (ev.Kind == api.KindInstalled || booted) && v.Target != api.TargetDisk {
		v.Target, v.WipeAll = api.TargetDisk, false
		changed = true
	}
	return changed
}

// phaseAfter maps an event to the phase it shows ("" keeps the phase);
// ok=false for events that say nothing about a node.
func phaseAfter(ev api.Event) (api.Phase, bool) {
	switch ev.Kind {
	case api.KindDHCP:
		return api.PhaseDHCP, true
	case api.KindTFTP:
		return api.PhaseNetbooting, true
	case api.KindIPXE, api.KindIgnition:
		if ev.Script == api.ScriptInstall || ev.Script == api.ScriptMatchbox || ev.Ignition == api.IgnitionInstall {
			return api.PhaseNetbooting, true
		}
		if ev.Ignition == api.IgnitionMatchboxInstall {
			return api.PhaseInstalling, true
		}
		return "", true
	case api.KindInstalling:
		return api.PhaseInstalling, true
	case api.KindInstalled:
		return api.PhaseInstalled, true
	case api.KindBooted:
		return api.PhaseBooted, true
	case api.KindFailed:
		return api.PhaseFailed, true
	}
	return "", false
}

func (s *store) saveLocked() error {
	out := targetsOnDisk{Seq: s.applied, Nodes: map[string]nodeTarget{}}
	for mac, v := range s.nodes {
		out.Nodes[mac] = v.nodeTarget
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding node targets: %w", err)
	}
	return atomicfile.Write(filepath.Join(s.dir, TargetsFile), append(b, '\n'), 0o600) // tokens
}

// inWindow says whether the node's boot window is open.
func (s *store) inWindow(mac string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inWindowLocked(mac)
}

// target returns what a node's next netboot should do.
func (s *store) target(mac string) nodeTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.nodes[mac]; v != nil {
		return v.nodeTarget
	}
	return nodeTarget{Target: api.TargetInstall}
}

// reinstall makes the node's next netboot install again, in a new install
// generation with a new token, and opens its boot window.
func (s *store) reinstall(mac string, wipeAll bool) (api.Node, error) {
	n, err := s.markForInstall(mac, wipeAll)
	if err != nil {
		return n, err
	}
	return s.withBMCLease(n), nil
}

func (s *store) markForInstall(mac string, wipeAll bool) (api.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byMAC[mac]
	if !ok {
		return api.Node{}, fmt.Errorf("no planned node has the primary MAC %s", mac)
	}
	v := s.viewFor(mac)
	old := *v
	v.Target, v.WipeAll = api.TargetInstall, wipeAll
	err := s.openWindowLocked(v, true)
	if err == nil {
		err = s.saveLocked()
	}
	if err != nil {
		*v = old
		return api.Node{}, fmt.Errorf("reinstalling %s: %w", mac, err)
	}
	return s.viewLocked(n), nil
}

// nodes returns every member node's state, in plan order.
func (s *store) list() []api.Node {
	s.mu.Lock()
	out := make([]api.Node, 0, len(s.plan.Nodes))
	for _, n := range s.plan.Nodes {
		out = append(out, s.viewLocked(n))
	}
	s.mu.Unlock()
	for i := range out {
		out[i] = s.withBMCLease(out[i])
	}
	return out
}

// view returns one planned member node's state (by primary MAC).
func (s *store) view(mac string) (api.Node, bool) {
	s.mu.Lock()
	n, ok := s.byMAC[mac]
	var out api.Node
	if ok {
		out = s.viewLocked(n)
	}
	s.mu.Unlock()
	if !ok {
		return api.Node{}, false
	}
	return s.withBMCLease(out), true
}

// withBMCLease reports the BMC's current lease as its address. It runs
// outside s.mu: the lease store has locks of its own.
func (s *store) withBMCLease(n api.Node) api.Node {
	if s.leaseOf != nil && n.BMCMAC != "" {
		if ip, ok := s.leaseOf(n.BMCMAC); ok {
			n.BMCIP = ip
		}
	}
	return n
}

func (s *store) viewLocked(n plan.Node) api.Node {
	out := api.Node{PrimaryMAC: n.PrimaryMAC, Hostname: n.Hostname, IP: n.IP, BMCMAC: n.BMCMAC, BMCIP: n.BMCIP,
		Target: api.TargetInstall, Phase: api.PhaseUnknown}
	if v := s.nodes[n.PrimaryMAC]; v != nil {
		out.Target, out.InstallGeneration, out.WipeAll = v.Target, v.InstallGeneration, v.WipeAll
		if v.WindowUntil.After(s.now()) {
			out.WindowUntil = v.WindowUntil
		}
		if v.phase != "" {
			out.Phase = v.phase
		}
		out.LastEvent, out.LastEventAt = v.lastEvent, v.lastEventAt
	}
	return out
}

func (s *store) close() { s.j.close() }

// Bounds on what unauthenticated input writes to the journal: DHCP vendor
// and user classes reach up to 255 bytes each, junk iPXE requests any
// length; a message is for people, so a few hundred bytes say enough.
const (
	maxObservedMessage = 512
	maxSource          = 64
)

// capString cuts s to at most n bytes, on a rune boundary.
func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
