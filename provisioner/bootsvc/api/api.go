// Package api is the wire contract of Racker's boot services: the JSON types
// of the HTTP API (/api/v1/…), the Recorder through which the in-process
// DHCP and TFTP servers report what they saw, the Prometheus collectors they
// share, and a small Go client for other processes (the orchestrator, the
// CLI). It is a leaf, and the only public package of the boot services
// besides their door, provisioner/bootsvc (the HTTP server is its
// internal/web).
//
// Endpoints (docs/boot-contract.md has the node's side):
//
//	GET  /boot.ipxe                        chain to /ipxe?mac=${net0/mac}
//	GET  /ipxe?mac=MAC                     install, boot-from-disk or unknown script
//	GET  /ignition?mac=MAC&phase=P         install|boot config, only to the node itself, in its boot window,
//	                                       once per install generation; boot needs the node's token
//	GET  /assets/OS/VERSION/FILE           the OS release (Range requests; OS flatcar names it too)
//	GET  /assets/ipxe/FILE                 iPXE binaries
//	POST /api/v1/events                    node callbacks (Callback, ≤ 64 KiB, the node's token) → 204
//	GET  /healthz
//
// Management node only (loopback, or its own address), docs/security.md:
//
//	GET  /api/v1/events?after=SEQ&epoch=E&wait=D   EventsResponse, long poll
//	GET  /api/v1/nodes                     NodesResponse
//	GET  /api/v1/release                   Release (404 when the services serve no OS)
//	GET  /api/v1/nodes/{mac}               Node (404 when not a planned node)
//	POST /api/v1/nodes/{mac}/reinstall     ReinstallRequest → Node (opens a boot window)
//	POST /api/v1/nodes/{mac}/netboot       → Node (opens a boot window: Racker is about to netboot it)
//	POST /api/v1/plan/reload               → 204: re-read nodes.csv and plan.json, as SIGHUP does
//	GET  /metrics
//
// Per node, only to the node itself and in its boot window (as /ipxe):
//
//	GET  /matchbox/…                       matchbox's HTTP endpoints (boot.ipxe, ipxe, ignition, …)
//
// The types are a stable interface between processes and between helpers,
// so fields are only ever added, never renamed.
package api

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/inventory"
)

// Target is what a node's next netboot should do.
type Target string

const (
	// TargetInstall: the iPXE script boots the live installer. Every node
	// without a record starts here.
	TargetInstall Target = "install"
	// TargetDisk: the node is installed; a netboot answers "boot from disk",
	// so a failed hand-off to disk never becomes a netboot loop.
	TargetDisk Target = "disk"
)

// Phase is the boot services' own view of a node, from what they observed
// last (a DHCP lease, a file served, a callback). It is an observation, not
// the orchestrator's state machine.
type Phase string

const (
	PhaseUnknown    Phase = "unknown"
	PhaseDHCP       Phase = "dhcp"
	PhaseNetbooting Phase = "netbooting"
	PhaseInstalling Phase = "installing"
	PhaseInstalled  Phase = "installed"
	PhaseBooted     Phase = "booted"
	PhaseFailed     Phase = "failed"
)

// Node is one planned machine as the boot services see it
// (GET /api/v1/nodes).
type Node struct {
	PrimaryMAC string     `json:"primary_mac"`
	Hostname   string     `json:"hostname"`
	IP         netip.Addr `json:"ip"`
	BMCMAC     string     `json:"bmc_mac"`
	// BMCIP is the BMC's current DHCP lease, else its planned address.
	BMCIP  netip.Addr `json:"bmc_ip"`
	Target Target     `json:"target"`
	// Matchbox: a matchbox group selects the node by its MAC (lokoctl
	// registered it), so its netboot chains to matchbox's profile.
	Matchbox          bool  `json:"matchbox,omitempty"`
	InstallGeneration int   `json:"install_generation"`
	WipeAll           bool  `json:"wipe_all"`
	Phase             Phase `json:"phase"`
	// WindowUntil is when the node's open boot window closes (absent when
	// none is open): only then are its configs served (docs/security.md).
	WindowUntil time.Time `json:"window_until,omitzero"`
	LastEvent   EventKind `json:"last_event"`
	LastEventAt time.Time `json:"last_event_at,omitzero"`
}

// OSFlatcar is the OS name under which the served release is always
// found (/assets/flatcar/VERSION/), whatever OS it is.
const OSFlatcar = "flatcar"

// Release is the body of GET /api/v1/release: the OS release the boot
// services serve under /assets/OS/VERSION/ (Lokomotive's configuration
// names the concrete version; bootstrap may talk to a running racker
// serve that prepared it).
type Release struct {
	OS      string `json:"os"`
	Version string `json:"version"`
	// OtherImageKey is set (the fingerprints of the key the images are
	// signed with) when that key is not the OS's own: nodes verify the
	// images only with flatcar-install -k, which Racker's install config
	// passes and Lokomotive's install profiles do not.
	OtherImageKey string `json:"other_image_key,omitempty"`
}

// NodesResponse is the body of GET /api/v1/nodes.
type NodesResponse struct {
	Nodes []Node `json:"nodes"`
}

// EventKind says what happened.
type EventKind string

const (
	// KindDHCP: a lease was given; ClientArch holds the client's
	// architectures (Message, for people: ip, client arch, user/vendor class).
	KindDHCP EventKind = "dhcp"
	// KindMachineSeen: a MAC that is not in the plan asked for DHCP
	// (ClientArch as for KindDHCP).
	KindMachineSeen EventKind = "machine_seen"
	// KindTFTP: a file was sent over TFTP; Message names it.
	KindTFTP EventKind = "tftp"
	// KindIPXE: an iPXE script was served; Script says which.
	KindIPXE EventKind = "ipxe"
	// KindIgnition: an Ignition config was served; Ignition says which.
	KindIgnition EventKind = "ignition"
	// KindForbidden: a request for a node's secrets or a callback was
	// refused: outside the node's boot window, from an address that is
	// neither the node's planned address nor its current lease, without
	// the node's token, or a second time in one install generation.
	// Recorded at a bounded rate per source (Message says how many more
	// were refused since the last one recorded).
	KindForbidden EventKind = "forbidden"

	// Node callbacks (POST /api/v1/events, docs/boot-contract.md §5).
	KindInstalling EventKind = "installing"
	KindInstalled  EventKind = "installed"
	KindBooted     EventKind = "booted"
	KindFailed     EventKind = "failed"
)

// IsCallback says whether a node may report this kind itself.
func (k EventKind) IsCallback() bool {
	switch k {
	case KindInstalling, KindInstalled, KindBooted, KindFailed:
		return true
	}
	return false
}

// Script is the iPXE script a node was served (KindIPXE events).
type Script string

const (
	// ScriptInstall boots the live installer: the node's target is install.
	ScriptInstall Script = "install"
	// ScriptDisk hands the node back to its firmware to boot from disk: its
	// target is disk.
	ScriptDisk Script = "disk"
	// ScriptWait keeps a node whose target is install in iPXE, asking
	// again, because no OS release is available yet.
	ScriptWait Script = "waiting"
	// ScriptUnknown installs nothing: the MAC is not a planned node (or the
	// request named no valid MAC).
	ScriptUnknown Script = "unknown"
	// ScriptMatchbox chains to the embedded matchbox's boot.ipxe: the
	// node's target is install and lokoctl registered a matchbox group
	// for its MAC, so matchbox's profile installs it (MatchboxPath).
	ScriptMatchbox Script = "matchbox"
	// ScriptNoWindow keeps a node whose target is install in iPXE, asking
	// again, because Racker opened no boot window for it: it netbooted on
	// its own, or someone asks in its name.
	ScriptNoWindow Script = "no_window"
)

// IgnitionPhase names an Ignition config (KindIgnition events; the phase
// parameter of GET /ignition).
type IgnitionPhase string

const (
	// IgnitionInstall is the live installer's config: it writes the OS to disk.
	IgnitionInstall IgnitionPhase = "install"
	// IgnitionBoot is the installed system's first-boot config.
	IgnitionBoot IgnitionPhase = "boot"
	// IgnitionMatchboxInstall is the installer's config from matchbox
	// (/matchbox/ignition?mac=…: Lokomotive's install profile, whose
	// installer makes no callbacks): the install starts.
	IgnitionMatchboxInstall IgnitionPhase = "matchbox_install"
	// IgnitionMatchboxNode is the installed system's config from matchbox
	// (/matchbox/ignition?…&os=installed: Lokomotive's node profile),
	// fetched at its first boot. It is not IgnitionBoot: within the
	// node's boot window it is the install's end (no callback says so).
	IgnitionMatchboxNode IgnitionPhase = "matchbox_node"
)

// Event is one entry of the event journal (GET /api/v1/events). Seq is
// assigned by the store, strictly increasing, and survives restarts; a
// Recorder ignores Seq (and fills Time when zero).
//
// What a program may act on is typed: Kind (for node callbacks, the
// callback's kind; see IsCallback) and the detail fields of that kind.
// Message is for people (logs, last event in status) and may change
// wording at any time; no code decides anything from it.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	MAC     string    `json:"mac"`
	Kind    EventKind `json:"kind"`
	Message string    `json:"message,omitempty"`
	// Source is the sender's ip:port.
	Source string `json:"source,omitempty"`

	// Script is the iPXE script served (KindIPXE).
	Script Script `json:"script,omitempty"`
	// Ignition is the Ignition config served (KindIgnition).
	Ignition IgnitionPhase `json:"ignition,omitempty"`
	// ClientArch lists the DHCP client's architectures (option 93, RFC
	// 4578), in its order; the first is what its firmware runs (KindDHCP,
	// KindMachineSeen; absent when the client sent none).
	ClientArch []uint16 `json:"client_arch,omitempty"`
	// Unsolicited: a DHCP, TFTP or iPXE event of a node that was not
	// netbooting in a boot window Racker opened. Anyone on the internal
	// network can cause one with the node's MAC, so it is recorded for
	// people and never moves a phase (docs/security.md).
	Unsolicited bool `json:"unsolicited,omitempty"`
	// Epoch names the journal the event belongs to. Sequence numbers
	// start again at 1 in a new journal (its file was deleted), so a
	// reader keeps (Epoch, Seq) as its cursor, never Seq alone.
	Epoch string `json:"epoch,omitempty"`
}

// The client architectures of x86-64 UEFI firmware (DHCP option 93, IANA's
// "Processor Architecture Types"; 0 is x86 BIOS). RFC 4578 lists 7 as EFI
// BC and 9 as x86-64, which its errata swapped; firmware sends either.
const (
	ArchEFIx64 uint16 = 7 // x64 UEFI
	ArchEFIBC  uint16 = 9 // EFI BC, as some x64 firmware says
)

// UEFI says whether a DHCP event came from x86-64 UEFI firmware: its first
// client architecture is 7 or 9 (docs/boot-contract.md §1).
func (e Event) UEFI() bool {
	return len(e.ClientArch) > 0 && (e.ClientArch[0] == ArchEFIx64 || e.ClientArch[0] == ArchEFIBC)
}

// EventsResponse is the body of GET /api/v1/events. Epoch is the
// journal's; when the request named another epoch, Events start from the
// beginning of this one.
type EventsResponse struct {
	Epoch  string  `json:"epoch,omitempty"`
	Events []Event `json:"events"`
}

// Recorder takes events from the in-process DHCP and TFTP servers. The web
// server's store implements it: Record assigns the sequence number and
// returns once the event is durable in the journal (group commit: concurrent
// callers share one fsync). A caller on a hot path that must not wait for
// the disk may call it from its own goroutine.
type Recorder interface {
	Record(Event)
}

// RecorderFunc adapts a function to a Recorder (handy in unit tests).
type RecorderFunc func(Event)

// Record calls f.
func (f RecorderFunc) Record(e Event) { f(e) }

// MaxCallbackBytes is the largest body POST /api/v1/events accepts.
const MaxCallbackBytes = 64 << 10

// MaxMessageBytes bounds an event's message, so one chatty node cannot
// bloat the journal.
const MaxMessageBytes = 4 << 10

// TokenHeader carries a node's token: "Authorization: Bearer TOKEN"
// (TokenScheme). The token is in the node's install config, made anew for
// each install generation; the boot-phase config fetch and every callback
// present it (docs/boot-contract.md).
const (
	TokenHeader = "Authorization"
	TokenScheme = "Bearer "
)

// Callback is the body a node POSTs to /api/v1/events, with its token in
// TokenHeader.
type Callback struct {
	MAC     string    `json:"mac"`
	Event   EventKind `json:"event"`
	Message string    `json:"message,omitempty"`
}

// Validate checks a callback and returns it with its MAC normalised.
func (c Callback) Validate() (Callback, error) {
	mac, err := inventory.NormalizeMAC(c.MAC)
	if err != nil {
		return c, fmt.Errorf("field mac: %w", err)
	}
	c.MAC = mac
	if !c.Event.IsCallback() {
		return c, fmt.Errorf("field event: %q is not one of installing, installed, booted, failed", c.Event)
	}
	if len(c.Message) > MaxMessageBytes {
		return c, fmt.Errorf("field message: %d bytes, at most %d", len(c.Message), MaxMessageBytes)
	}
	if strings.ContainsRune(c.Message, 0) {
		return c, errors.New("field message: contains a NUL byte")
	}
	return c, nil
}

// ReinstallRequest is the body of POST /api/v1/nodes/{mac}/reinstall.
type ReinstallRequest struct {
	WipeAll bool `json:"wipe_all"`
}

// ErrorResponse is the body of every 4xx/5xx answer of /api/v1.
type ErrorResponse struct {
	Error string `json:"error"`
}
