// Package bmc drives a server's baseboard management controller: power,
// boot device, diagnostics and the serial-over-LAN console, behind one small
// interface (Controller) with one driver per URL scheme:
//
//	ipmi://HOST[:PORT]   IPMI 2.0 lanplus (cipher suites 17 and 3); IPMI 1.5 (MD5) only on
//	                     request and for BMCs never seen speaking 2.0
//	redfish://HOST[:PORT][/redfish/v1/Systems/ID]
//	                     Redfish over HTTPS (gofish): a session (Basic auth when the
//	                     BMC has none), the certificate pinned on first use
//	libvirt:///DOMAIN    a local libvirt domain standing in for a server without a BMC
//	libvirt:///          the same, found by Options.PrimaryMAC
//	fake://NAME          in memory, shared per NAME inside the process (unit and scale tests)
//
// Every error names the node, the BMC address and what was tried, so a rack
// operator reading one line knows which cable to check. Credentials never
// reach argv, logs or errors.
package bmc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/inventory"
)

// PowerState is the chassis power: "on" or "off".
type PowerState string

const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// PowerAction is a chassis control request.
type PowerAction string

const (
	ActionOn    PowerAction = "on"
	ActionOff   PowerAction = "off"
	ActionCycle PowerAction = "cycle" // off then on; powers on a node that is off
	ActionReset PowerAction = "reset" // hard reset without removing power
	// ActionSoftOff asks the OS to shut down (ACPI power button) and
	// returns at once; the node is off when the OS is done.
	ActionSoftOff PowerAction = "soft-off"
)

// Device is the boot device override.
type Device string

const (
	DevicePXE  Device = "pxe"
	DeviceDisk Device = "disk"
	DeviceNone Device = "none" // no override: the firmware's own order
)

// BootFlags are IPMI boot flags (Set System Boot Options, parameter 5).
type BootFlags struct {
	Device     Device
	Persistent bool // else next boot only
	EFI        bool // else legacy (PC compatible)
	Valid      bool // the BMC reports the flags as valid (set and not yet consumed)
}

func (f BootFlags) String() string {
	dev := f.Device
	if dev == "" {
		dev = DeviceNone
	}
	s := string(dev)
	if f.Persistent {
		s += " persistent"
	} else {
		s += " next-boot"
	}
	if f.EFI {
		s += " efi"
	} else {
		s += " legacy"
	}
	if !f.Valid {
		s += " (not valid)"
	}
	return s
}

// Diagnostics is what `racker bmc diag` shows; fields the BMC could not
// report stay empty and the reason is in Problems. IPMI fills the device id
// fields, Redfish the named facts (manufacturer, model, serial, BIOS).
type Diagnostics struct {
	Driver         string     `json:"driver"`
	Address        string     `json:"address"` // BMC address (host:port, domain name, fake name)
	MAC            string     `json:"mac,omitempty"`
	DeviceID       uint8      `json:"device_id"`
	DeviceRevision uint8      `json:"device_revision"`
	Firmware       string     `json:"firmware,omitempty"` // the BMC's own firmware
	IPMIVersion    string     `json:"ipmi_version,omitempty"`
	ManufacturerID uint32     `json:"manufacturer_id"`
	ProductID      uint16     `json:"product_id"`
	Protocol       string     `json:"protocol,omitempty"` // "lanplus (cipher suite 17)", "lan (IPMI 1.5)", "Redfish 1.15.0 over HTTPS, session", …
	Power          PowerState `json:"power,omitempty"`
	Boot           BootFlags  `json:"boot"`
	BootKnown      bool       `json:"boot_known"`
	SOLAvailable   bool       `json:"sol_available"`

	// The server as its BMC describes it (Redfish ComputerSystem).
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	BIOSVersion  string `json:"bios_version,omitempty"`
	// BootMode is the boot mode as the BMC reports it ("UEFI", "Legacy").
	BootMode string `json:"boot_mode,omitempty"`
	// Health is the system's Status.Health ("OK", "Warning", "Critical").
	Health string `json:"health,omitempty"`
	// TLS says how the BMC's certificate was checked ("pinned sha256:…").
	TLS string `json:"tls,omitempty"`
	// Console says what serial console the driver offers, when not SOL.
	Console string `json:"console,omitempty"`

	Problems []string `json:"problems,omitempty"`
}

// Controller is one node's BMC. Methods are safe for concurrent use.
type Controller interface {
	PowerState(ctx context.Context) (PowerState, error)
	Power(ctx context.Context, a PowerAction) error
	// SetBoot writes the flags the way real BMCs need (parameter 3 stops the 60 s
	// valid-bit timeout, write parameter 5, read back, retry). verified=false when
	// the BMC cannot report flags back (stock ipmi_sim) after bounded retries.
	SetBoot(ctx context.Context, f BootFlags) (verified bool, err error)
	Boot(ctx context.Context) (BootFlags, error)
	Diag(ctx context.Context) (Diagnostics, error)
	Console(ctx context.Context) (io.ReadWriteCloser, error) // SOL; a second one is refused
	Close() error
}

// Options configure a controller. The zero value plus credentials works.
type Options struct {
	Credentials inventory.Credentials // never logged
	Node        string                // for error messages, e.g. the primary MAC
	Logger      *slog.Logger
	// PrimaryMAC finds the domain of `libvirt:///` (no domain name).
	PrimaryMAC string
	// Tries is how many times an operation is attempted when the BMC does not
	// answer (default 3); authentication failures are never retried.
	Tries int
	// TryTimeout bounds one attempt (session setup plus the command; default 3s).
	TryTimeout time.Duration
	// Backoff is the pause after the first failed attempt, doubled each time (default 500ms).
	Backoff time.Duration
	// BootRetries is how many times SetBoot writes flags that do not read
	// back as written before it reports them unverified (default 3).
	BootRetries int
	// MaxSessions bounds concurrent sessions per BMC address in this process
	// (default 2: BMCs have few session slots and refuse more).
	MaxSessions int
	// SessionIdle is how long an IPMI session is kept after an operation
	// for the next one (default 20 s, and never past 25 s from its login;
	// negative: a session per operation), and SessionKeepAlive how often
	// a kept session is kept alive (default 10 s). See ipmi_session.go.
	SessionIdle      time.Duration
	SessionKeepAlive time.Duration
	// LibvirtSocket is libvirtd's API socket (default /var/run/libvirt/libvirt-sock).
	LibvirtSocket string
	// Pins keeps the TLS key of each Redfish BMC pinned on first use; the
	// CLI gives a FilePins in the state folder. Nil: pins last as long as
	// the process.
	Pins PinStore
	// Insecure skips the TLS check of Redfish BMCs altogether (no pin):
	// anyone on the path then sees the BMC password. Only on request.
	Insecure bool
	// Protocols remembers which IPMI protocol each BMC answered, so a BMC
	// that once spoke lanplus is never spoken to otherwise
	// (ipmi_downgrade.go); the CLI gives a FileProtocols in the state
	// folder. Nil: remembered for the life of the process.
	Protocols ProtocolStore
	// AllowIPMI15 lets the ipmi driver fall back to IPMI 1.5 (MD5 or MD2
	// authentication, never straight password) for a BMC that has never
	// answered IPMI 2.0. Off by default: only on request
	// (--ipmi-allow-v15).
	AllowIPMI15 bool
}

func (o Options) withDefaults() Options {
	if o.Pins == nil {
		o.Pins = processPins
	}
	if o.Protocols == nil {
		o.Protocols = processProtocols
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tries <= 0 {
		o.Tries = 3
	}
	if o.TryTimeout <= 0 {
		o.TryTimeout = 3 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.BootRetries <= 0 {
		o.BootRetries = 3
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 2
	}
	if o.SessionIdle == 0 {
		o.SessionIdle = 20 * time.Second
	}
	if o.SessionKeepAlive <= 0 {
		o.SessionKeepAlive = 10 * time.Second
	}
	if o.LibvirtSocket == "" {
		o.LibvirtSocket = "/var/run/libvirt/libvirt-sock"
	}
	return o
}

// Open picks the driver by scheme: ipmi://HOST[:PORT],
// redfish://HOST[:PORT][/redfish/v1/Systems/ID], libvirt:///DOMAIN (or
// libvirt:/// + Options.PrimaryMAC to find it), fake://NAME. It does not
// contact the BMC: the first operation does, so opening many is cheap.
func Open(ctx context.Context, rawURL string, opts Options) (Controller, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%sBMC URL %q: %w", nodePrefix(opts.Node), rawURL, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "redfish" && opts.TryTimeout <= 0 {
		// A Redfish BMC's web server takes seconds where IPMI takes
		// milliseconds (a Reset action, a first TLS handshake).
		opts.TryTimeout = redfishTryTimeout
	}
	opts = opts.withDefaults()
	switch scheme {
	case "ipmi":
		return openIPMI(u, opts)
	case "redfish":
		return openRedfish(u, opts)
	case "libvirt":
		return openLibvirt(ctx, u, opts)
	case "fake":
		name := u.Host + u.Path
		if name == "" {
			return nil, fmt.Errorf("%sBMC URL %q: fake:// needs a name", nodePrefix(opts.Node), rawURL)
		}
		return &fakeController{bmc: Fake(name), node: opts.Node, retries: opts.BootRetries}, nil
	default:
		return nil, fmt.Errorf("%sBMC URL %q: unknown scheme %q (want ipmi, redfish, libvirt or fake)", nodePrefix(opts.Node), rawURL, u.Scheme)
	}
}

func nodePrefix(node string) string {
	if node == "" {
		return ""
	}
	return "node " + node + ": "
}

// Breaker is a console that can send a serial BREAK (the IPMI driver's).
type Breaker interface {
	SendBreak(ctx context.Context) error
}

// ConsoleDeactivator is a controller that can end a console another
// client left open (the IPMI driver's: Deactivate Payload).
type ConsoleDeactivator interface {
	DeactivateConsole(ctx context.Context) error
}
