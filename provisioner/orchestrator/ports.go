package orchestrator

import (
	"context"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The orchestrator talks to the world through these small ports, so unit
// tests drive every transition and timeout with fakes and a simulated
// clock, and the real drivers (IPMI, libvirt, the boot services' HTTP API)
// plug in unchanged.

// Clock is the time source; tests use a simulated one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BootDevice is what a node boots from next.
type BootDevice string

const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// BMC is what the orchestrator needs from a node's BMC. Every method names
// the node and the BMC address in its errors.
type BMC interface {
	// Diag checks that the BMC answers and reports the power state ("on"/"off").
	Diag(ctx context.Context) (power string, err error)
	// SetBoot sets the boot device; persistent=false is next boot only.
	// verified=false when the BMC cannot report the flags back.
	SetBoot(ctx context.Context, dev BootDevice, persistent, efi bool) (verified bool, err error)
	// PowerState is "on" or "off".
	PowerState(ctx context.Context) (string, error)
	// Power runs "on", "off", "cycle" or "reset".
	Power(ctx context.Context, action string) error
	Close() error
}

// BMCOpener connects to a node's BMC. It is called for every operation, so
// a BMC whose address changes (a new DHCP lease) is found again.
type BMCOpener func(ctx context.Context, n NodeSpec) (BMC, error)

// BootServices is the orchestrator's view of the boot services, in the
// boot services' own types (their HTTP contract, provisioner/bootsvc/api):
// *api.Client implements it. Decisions read the events' typed fields
// (Kind, Script, Ignition, ClientArch), never their messages.
type BootServices interface {
	// EventsIn long-polls for events after seq in the journal named by
	// epoch, waiting up to wait (0: what the journal holds now). When the
	// journal is another one (its file was deleted and sequence numbers
	// restarted), the answer starts at its first event, whose Epoch says
	// so.
	EventsIn(ctx context.Context, epoch string, after uint64, wait time.Duration) ([]api.Event, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	// Reinstall makes the node's next netboot an install (a new install
	// generation), wiping every disk with wipeAll, and opens its boot window.
	Reinstall(ctx context.Context, mac string, wipeAll bool) (api.Node, error)
	// Netboot opens the node's boot window: the orchestrator is about to
	// power it on into PXE. Only inside a window are its configs served and
	// its DHCP, TFTP and iPXE events more than unsolicited.
	Netboot(ctx context.Context, mac string) (api.Node, error)
}

var _ BootServices = (*api.Client)(nil)
