// Package cluster runs the cluster profile once every node is booted: what
// "the rack is provisioned" means beyond installed machines.
//
//   - flatcar: plain Flatcar Container Linux; done when every node is booted.
//   - lokomotive: writes the configuration of Lokomotive v0.9.0's bare-metal
//     platform (baremetal.lokocfg, lokocfg.vars, the component files and
//     per-node Container Linux Config snippets, see WriteLokomotive) and
//     runs `lokoctl cluster apply`. Without lokoctl it fails with
//     ErrNoLokoctl before anything is written.
//
// The door is Apply; LokomotiveTools and WriteLokomotive let bootstrap
// check early and tests look at the files.
package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/racker/racker/provisioner/plan"
)

// Profile names.
const (
	Flatcar    = "flatcar"
	Lokomotive = "lokomotive"
)

// Input is what a profile needs.
type Input struct {
	Plan     *plan.Plan
	StateDir string
	// SSHPublicKey is the cluster's key in authorized_keys form.
	SSHPublicKey string
	// Domain is the cluster's DNS domain (lokomotive: k8s_domain_name),
	// DefaultDomain when empty.
	Domain string
	// InstallDisk is the install disk, "" for the smallest.
	InstallDisk string
	// PublicIPs are the secondary NICs' addresses by secondary MAC.
	PublicIPs PublicIPs
	// MatchboxURL is matchbox's HTTP endpoint (lokomotive's
	// matchbox_http_endpoint): Racker's own HTTP boot services, which serve
	// matchbox's read-only endpoints beside Racker's.
	MatchboxURL string
	// Matchbox is where lokoctl's Terraform writes profiles and groups; a
	// zero value means DefaultMatchbox(StateDir, Plan).
	Matchbox Matchbox
	// Components are the Lokomotive components beyond the platform.
	Components Components
	// KernelConsole are the nodes' console kernel arguments (default
	// DefaultKernelConsole).
	KernelConsole []string
	// OSChannel and OSVersion name the Flatcar release the nodes install
	// (default stable, current). Lokomotive's cached install fetches
	// /assets/flatcar/OSVERSION/…, so OSVersion must be the concrete
	// version Racker's HTTP serves there.
	OSChannel, OSVersion string
	// LookPath finds lokoctl and terraform (default LookTool); Run
	// executes lokoctl.
	LookPath func(string) (string, error)
	Run      func(ctx context.Context, dir, bin string, args ...string) error
	Stdout   io.Writer
	Logger   *slog.Logger
}

// ParseProfile checks a --provision value.
func ParseProfile(s string) (string, error) {
	switch s {
	case Flatcar, Lokomotive:
		return s, nil
	}
	return "", fmt.Errorf("--provision %q: want flatcar or lokomotive", s)
}

// Apply runs the profile. It is called once every node of the plan is
// booted; it returns nil only when the profile was applied.
func Apply(ctx context.Context, profile string, in Input) error {
	if in.Logger == nil {
		in.Logger = slog.New(slog.DiscardHandler)
	}
	if in.Stdout == nil {
		in.Stdout = io.Discard
	}
	switch profile {
	case Flatcar:
		in.Logger.Info("flatcar profile: every node is booted; nothing more to do")
		return nil
	case Lokomotive:
		return applyLokomotive(ctx, in)
	}
	return fmt.Errorf("cluster profile %q: unknown (want flatcar or lokomotive)", profile)
}
