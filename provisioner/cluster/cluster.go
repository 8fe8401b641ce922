// Package cluster runs the cluster profile once every node is booted: what
// "the rack is provisioned" means beyond installed machines.
//
//   - flatcar: plain Flatcar Container Linux; done when every node is booted.
//   - lokomotive: writes the configuration of Lokomotive's bare-metal
//     platform (baremetal.lokocfg and lokocfg.vars) and runs
//     `lokoctl cluster apply` when lokoctl is on PATH, otherwise prints the
//     exact command to run.
//
// The door is Apply.
package cluster

import (
	"context"
	"errors"
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
	// Domain is the cluster's DNS domain (lokomotive: k8s_domain_name).
	Domain string
	// InstallDisk is the install disk, "" for the smallest.
	InstallDisk string
	// PublicIPs are static public addresses by secondary MAC.
	PublicIPs PublicIPs
	// MatchboxURL is where the nodes' boot services answer (lokomotive's
	// matchbox_http_endpoint, here Racker's own HTTP boot services).
	MatchboxURL string
	// LookPath finds lokoctl (default exec.LookPath); Run executes it.
	LookPath func(string) (string, error)
	Run      func(ctx context.Context, dir, bin string, args ...string) error
	Stdout   io.Writer
	Logger   *slog.Logger
}

// ErrNotApplied says the profile prepared everything but a step is left to
// the operator (lokoctl is not on PATH): not a failure, but the nodes are
// not in a cluster yet.
var ErrNotApplied = errors.New("the cluster profile's last step is left to the operator")

// ParseProfile checks a --provision value.
func ParseProfile(s string) (string, error) {
	switch s {
	case Flatcar, Lokomotive:
		return s, nil
	}
	return "", fmt.Errorf("--provision %q: want flatcar or lokomotive", s)
}

// Apply runs the profile. It is called once every node of the plan is
// booted; it returns nil when the cluster is ready.
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
