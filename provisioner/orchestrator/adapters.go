package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The real drivers behind the ports: provisioner/bmc for BMCs and the boot
// services' HTTP client (contract B).

// ControllerOpener opens each node's BMC with provisioner/bmc. urlFor picks
// the BMC URL (ipmi://ADDRESS from Racker's lease, libvirt:///, fake://…);
// base carries the credentials and timeouts.
func ControllerOpener(urlFor func(ctx context.Context, n NodeSpec) (string, error), base bmc.Options) BMCOpener {
	return func(ctx context.Context, n NodeSpec) (BMC, error) {
		u, err := urlFor(ctx, n)
		if err != nil {
			return nil, err
		}
		opts := base
		opts.Node = n.PrimaryMAC
		if n.Hostname != "" {
			opts.Node = n.Hostname + " (" + n.PrimaryMAC + ")"
		}
		opts.PrimaryMAC = n.PrimaryMAC
		c, err := bmc.Open(ctx, u, opts)
		if err != nil {
			return nil, err
		}
		return controllerBMC{c}, nil
	}
}

type controllerBMC struct{ c bmc.Controller }

func (b controllerBMC) Diag(ctx context.Context) (string, error) {
	d, err := b.c.Diag(ctx)
	if err != nil {
		return "", err
	}
	return string(d.Power), nil
}

func (b controllerBMC) SetBoot(ctx context.Context, dev BootDevice, persistent, efi bool) (bool, error) {
	return b.c.SetBoot(ctx, bmc.BootFlags{Device: bmc.Device(dev), Persistent: persistent, EFI: efi, Valid: true})
}

func (b controllerBMC) PowerState(ctx context.Context) (string, error) {
	s, err := b.c.PowerState(ctx)
	return string(s), err
}

func (b controllerBMC) Power(ctx context.Context, action string) error {
	return b.c.Power(ctx, bmc.PowerAction(action))
}

func (b controllerBMC) Close() error { return b.c.Close() }

// FromAPI adapts the boot services' HTTP client to the BootServices port.
func FromAPI(c *api.Client) BootServices { return apiBoot{c} }

type apiBoot struct{ c *api.Client }

func (a apiBoot) Events(ctx context.Context, after uint64, wait time.Duration) ([]Event, error) {
	if wait <= 0 {
		wait = time.Millisecond // an answer at once: what is in the journal now
	}
	evs, err := a.c.Events(ctx, after, wait)
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Seq: e.Seq, Time: e.Time, MAC: e.MAC, Kind: string(e.Kind), Message: e.Message}
	}
	return out, nil
}

func (a apiBoot) Nodes(ctx context.Context) ([]RemoteNode, error) {
	ns, err := a.c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RemoteNode, len(ns))
	for i, n := range ns {
		out[i] = remote(n)
	}
	return out, nil
}

func (a apiBoot) Reinstall(ctx context.Context, mac string, wipeAll bool) (RemoteNode, error) {
	n, err := a.c.Reinstall(ctx, mac, wipeAll)
	if err != nil {
		return RemoteNode{}, fmt.Errorf("reinstall %s: %w", mac, err)
	}
	return remote(n), nil
}

func remote(n api.Node) RemoteNode {
	return RemoteNode{PrimaryMAC: n.PrimaryMAC, Target: string(n.Target), InstallGeneration: n.InstallGeneration, Phase: string(n.Phase)}
}
