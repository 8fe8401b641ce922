package ui

import (
	"sort"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/status"
)

// Unit is one machine of the rack drawing: the node as `racker status`
// reports it, plus what the drawing needs from the plan (its row in
// nodes.csv, its type, whether it is the management node).
type Unit struct {
	status.Node
	Type string `json:"type"`
	// BMCMAC names the node's BMC in the boot services' events (its DHCP
	// leases), so the page shows them as the node's.
	BMCMAC string `json:"bmc_mac,omitempty"`
	// Management marks the management node: Racker runs there, so it has
	// no provisioning phase of its own.
	Management bool `json:"management,omitempty"`
	// Row is the machine's row among nodes.csv's machines (0 = first);
	// -1 for a node Racker recorded that nodes.csv no longer has.
	Row int `json:"row"`
}

// PhaseCount is how many servers are in one phase.
type PhaseCount struct {
	Phase orchestrator.Phase `json:"phase"`
	Count int                `json:"count"`
}

// Rack is what the page shows: every machine in nodes.csv order, the
// progress of the whole bootstrap and a count per phase. It is what the
// live stream sends on every change.
type Rack struct {
	Cluster string `json:"cluster"`
	// Now is the server's clock when the view was made: the page counts
	// the time in phase from it, whatever the browser's clock says.
	Now    time.Time    `json:"now"`
	Units  []Unit       `json:"units"`
	Phases []PhaseCount `json:"phases"` // phases with servers in them, in phase order
	// Servers counts every machine but the management node; Done those
	// booted or ready, Failed, Left (excluding, excluded) and Working
	// (holding a slot) the others by category; Pending is the rest.
	Servers int `json:"servers"`
	Done    int `json:"done"`
	Working int `json:"working"`
	Failed  int `json:"failed"`
	Left    int `json:"left"`
	Pending int `json:"pending"`
	// Percent is the share of the servers provisioned (booted or ready),
	// leaving out the ones left out on purpose; 100 with nothing to do.
	Percent int `json:"percent"`
	// Problem says why the view may be incomplete (no plan: nodes.csv
	// does not read), for the page's banner.
	Problem string `json:"problem,omitempty"`
}

// Detail is one node's story, for its panel (or its page without
// JavaScript): the transitions with their causes, the last boot-services
// events, and the console tail when bootstrap recorded one.
type Detail struct {
	Unit        Unit                      `json:"unit"`
	Transitions []orchestrator.Transition `json:"transitions"` // oldest first
	Events      []api.Event               `json:"events"`      // oldest first
	// Console is the tail of STATE/console/HOSTNAME.log; nil when no
	// console was recorded (the events are what there is).
	Console *Console  `json:"console"`
	Now     time.Time `json:"now"`
}

// Console is the end of a node's recorded serial console, cleaned for a
// page (no terminal escapes or control characters).
type Console struct {
	File    string    `json:"file"`
	Tail    string    `json:"tail"`
	Size    int64     `json:"size"`
	Updated time.Time `json:"updated"`
}

// buildRack orders the status by the plan (nodes.csv rows, the management
// node included) and counts phases. Nodes that status reports and the plan
// does not (recorded by an earlier plan) come last, so the page never
// shows less than racker status.
func buildRack(p *plan.Plan, st status.Status, now time.Time) Rack {
	r := Rack{Now: now.UTC(), Units: make([]Unit, 0, len(st.Nodes)+1)}
	byMAC := make(map[string]status.Node, len(st.Nodes))
	for _, n := range st.Nodes {
		byMAC[n.PrimaryMAC] = n
	}
	placed := map[string]bool{}
	if p != nil {
		r.Cluster = p.ClusterName
		all := p.All()
		sort.SliceStable(all, func(i, j int) bool { return all[i].Index < all[j].Index })
		for _, pn := range all {
			u := Unit{Type: pn.Type, Row: pn.Index, BMCMAC: pn.BMCMAC}
			if sn, ok := byMAC[pn.PrimaryMAC]; ok {
				u.Node = sn
			} else {
				u.Node = status.Node{PrimaryMAC: pn.PrimaryMAC, Hostname: pn.Hostname, Role: string(pn.Role), Phase: orchestrator.Pending}
				if pn.IP.IsValid() {
					u.IP = pn.IP.String()
				}
			}
			if pn.Role == plan.Management {
				u.Management, u.Phase = true, ""
			}
			placed[pn.PrimaryMAC] = true
			r.Units = append(r.Units, u)
		}
	}
	for _, n := range st.Nodes {
		if !placed[n.PrimaryMAC] {
			r.Units = append(r.Units, Unit{Node: n, Row: -1})
		}
	}
	counts := map[orchestrator.Phase]int{}
	for _, u := range r.Units {
		if u.Management {
			continue
		}
		r.Servers++
		counts[u.Phase]++
		switch {
		case u.Phase.Done():
			r.Done++
		case u.Phase == orchestrator.Failed:
			r.Failed++
		case u.Phase.Left():
			r.Left++
		case u.Phase.Rank() > 0:
			r.Working++
		default:
			r.Pending++
		}
	}
	for _, ph := range phaseOrder {
		if counts[ph] > 0 {
			r.Phases = append(r.Phases, PhaseCount{Phase: ph, Count: counts[ph]})
			delete(counts, ph)
		}
	}
	// A phase this release does not know (a newer orchestrator's state):
	// counted all the same, after the known ones.
	var unknown []orchestrator.Phase
	for ph := range counts {
		unknown = append(unknown, ph)
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i] < unknown[j] })
	for _, ph := range unknown {
		r.Phases = append(r.Phases, PhaseCount{Phase: ph, Count: counts[ph]})
	}
	r.Percent = 100
	if n := r.Servers - r.Left; n > 0 {
		r.Percent = r.Done * 100 / n
	}
	return r
}

// phaseOrder is the order of the per-phase counts: the forward path, then
// the phases off it (the orchestrator's own order, docs/phases.md).
var phaseOrder = []orchestrator.Phase{orchestrator.Pending, orchestrator.BMCCheck, orchestrator.Reinstall,
	orchestrator.BMCReachable, orchestrator.PXERequested, orchestrator.Netbooting, orchestrator.Installing,
	orchestrator.Installed, orchestrator.FirstBoot, orchestrator.AwaitingDiskBoot, orchestrator.Booted,
	orchestrator.Ready, orchestrator.Failed, orchestrator.Excluding, orchestrator.Excluded}

// unit finds a machine of the view by primary MAC.
func (r Rack) unit(mac string) (Unit, bool) {
	for _, u := range r.Units {
		if u.PrimaryMAC == mac {
			return u, true
		}
	}
	return Unit{}, false
}
