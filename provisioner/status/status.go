// Package status is what Racker knows about each node, in one view: the
// plan (roles, addresses), the orchestrator's persisted records (phase,
// what the BMC said, why a node failed, the last error) and, when they
// answer, the boot services' fresher observations (newer events, install
// generations, the progress of nodes no run is watching, e.g. after
// reprovision --no-wait).
//
// The door is Collect; front-ends render its result (the CLI prints a
// table or JSON). It only reads: the orchestrator's state is read without
// its lock, so status works while a run writes.
package status

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// Node is one node of `racker status -o json`; the field names are a
// stable interface (fields are only ever added).
type Node struct {
	PrimaryMAC string             `json:"primary_mac"`
	Hostname   string             `json:"hostname"`
	Role       string             `json:"role"`
	Phase      orchestrator.Phase `json:"phase"`
	PhaseSince time.Time          `json:"phase_since,omitzero"`
	// InPhaseSeconds is how long the node has been in its phase, when
	// Collect ran (0 when PhaseSince is unknown).
	InPhaseSeconds int64     `json:"in_phase_seconds,omitempty"`
	BMCReachable   *bool     `json:"bmc_reachable"` // null: never asked
	Power          string    `json:"power"`
	BootDevice     string    `json:"boot_device"`
	OS             string    `json:"os"`
	IP             string    `json:"ip"`
	LastEvent      string    `json:"last_event"`
	LastEventAt    time.Time `json:"last_event_at,omitzero"`
	// InstallGeneration counts the reinstalls the boot services were asked for.
	InstallGeneration int `json:"install_generation"`
	// Reason says why a node failed or was left out; LastError is the last
	// operation's error (a BMC that does not answer, while it is retried).
	Reason    string `json:"reason,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Failures counts the node's failures since it last started afresh.
	Failures int `json:"failures,omitempty"`
}

// Status is the body of `racker status -o json`.
type Status struct {
	Nodes []Node `json:"nodes"`
}

// BootServices is the boot services' view of the nodes (*api.Client).
type BootServices interface {
	Nodes(ctx context.Context) ([]api.Node, error)
}

// Sources are what Collect merges.
type Sources struct {
	// StateDir holds the orchestrator's state. Required.
	StateDir string
	// Plan names the rack's nodes, roles and addresses; nil shows the
	// recorded nodes only.
	Plan *plan.Plan
	// Boot, when set, is asked for fresher observations; an error (the
	// boot services are not running) shows the recorded state only.
	Boot BootServices
	// Logger gets why the boot services' view is missing (debug); optional.
	Logger *slog.Logger
	// Now is the time InPhaseSeconds is counted to (default time.Now).
	Now func() time.Time
}

// Collect merges the sources into one node per planned or recorded node,
// ordered by hostname. Only the orchestrator's state can make it fail.
func Collect(ctx context.Context, src Sources) (Status, error) {
	st, err := orchestrator.Load(src.StateDir)
	if err != nil {
		return Status{}, err
	}
	byMAC := map[string]*Node{}
	var order []string
	add := func(mac string) *Node {
		if s, ok := byMAC[mac]; ok {
			return s
		}
		s := &Node{PrimaryMAC: mac, Phase: orchestrator.Pending}
		byMAC[mac] = s
		order = append(order, mac)
		return s
	}
	if p := src.Plan; p != nil {
		for _, n := range p.Servers() {
			s := add(n.PrimaryMAC)
			s.Hostname, s.Role = n.Hostname, string(n.Role)
			if n.IP.IsValid() {
				s.IP = n.IP.String()
			}
			if n.Role == plan.Excluded {
				s.Phase = orchestrator.Excluded
			}
		}
	}
	for _, n := range st.Sorted() {
		s := add(n.PrimaryMAC)
		if s.Hostname == "" {
			s.Hostname, s.Role = n.Hostname, n.Role
		}
		s.Phase, s.PhaseSince, s.BMCReachable, s.Power, s.BootDevice, s.OS = n.Phase, n.PhaseSince, n.BMCReachable, n.Power, n.BootDevice, n.OS
		s.LastEvent, s.LastEventAt, s.InstallGeneration = n.LastEvent, n.LastEventAt, n.InstallGeneration
		s.Reason, s.LastError, s.Failures = n.Reason, n.LastError, n.Failures
	}
	if src.Boot != nil {
		remote, err := src.Boot.Nodes(ctx)
		if err == nil {
			merge(byMAC, remote)
		} else if src.Logger != nil {
			src.Logger.Debug("boot services not answering; showing the recorded state", "err", err)
		}
	}
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	t := now()
	out := Status{Nodes: []Node{}}
	for _, mac := range order {
		n := *byMAC[mac]
		if !n.PhaseSince.IsZero() && t.After(n.PhaseSince) {
			n.InPhaseSeconds = int64(t.Sub(n.PhaseSince) / time.Second)
		}
		out.Nodes = append(out.Nodes, n)
	}
	sort.SliceStable(out.Nodes, func(i, j int) bool { return out.Nodes[i].Hostname < out.Nodes[j].Hostname })
	return out, nil
}

// remotePhase maps the boot services' observation onto the orchestrator's
// phases, for nodes whose recorded phase is behind it.
var remotePhase = map[api.Phase]orchestrator.Phase{
	api.PhaseNetbooting: orchestrator.Netbooting, api.PhaseInstalling: orchestrator.Installing,
	api.PhaseInstalled: orchestrator.Installed, api.PhaseBooted: orchestrator.Booted,
}

// merge takes the boot services' newer observations. A node's recorded
// phase only moves forward, only for nodes a run has started (not pending,
// failed or left out), and only on observations made after the node's
// last recorded transition: the boot services keep a node's old phase
// across a reinstall request.
func merge(byMAC map[string]*Node, remote []api.Node) {
	for _, rn := range remote {
		s := byMAC[rn.PrimaryMAC]
		if s == nil {
			continue
		}
		if rn.InstallGeneration > s.InstallGeneration {
			s.InstallGeneration = rn.InstallGeneration
		}
		if rn.LastEventAt.After(s.LastEventAt) && rn.LastEvent != "" {
			s.LastEvent, s.LastEventAt = string(rn.LastEvent), rn.LastEventAt
		}
		if rp, ok := remotePhase[rn.Phase]; ok && s.Phase.Rank() > orchestrator.Pending.Rank() &&
			rp.Rank() > s.Phase.Rank() && rn.LastEventAt.After(s.PhaseSince) {
			s.Phase = rp
		}
	}
}
