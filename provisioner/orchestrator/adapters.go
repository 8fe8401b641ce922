package orchestrator

import (
	"context"

	"github.com/racker/racker/provisioner/bmc"
)

// The real driver behind the BMC port: provisioner/bmc. (The boot
// services' HTTP client, *api.Client, is a BootServices as it is.)

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
