package vbmc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/types"
)

// cipherSuites are the RMCP+ suites real BMCs are driven with. Suite 0 (no
// authentication) is not offered, so a session asking for it is refused;
// IPMI v1.5 sessions are off for the same reason.
var cipherSuites = []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17}

// newIPMIServer wires go-ipmi's BMC server to the chassis and console on an
// already bound UDP socket (sockets are passed in, so tests use loopback).
func newIPMIServer(conn *net.UDPConn, ch *chassis, console hal.ConsoleHAL, nic *nicInfo, user, password string) (*server.Server, error) {
	info := bmc.DeviceInfo{
		DeviceID:                0x20,
		DeviceRevision:          1,
		FirmwareMajor:           1,
		FirmwareMinor:           0,
		IPMIVersion:             0x02,     // BCD, minor digit high: 2.0
		ManufacturerID:          0x000000, // unspecified: a simulator, not a vendor
		ProductID:               0x7273,   // "rs"
		AdditionalDeviceSupport: 0x80,     // chassis device (bit 7)
	}
	// A stable GUID per node, so a console sees the same BMC after restarts.
	sum := sha256.Sum256([]byte("racker-vbmc:" + ch.name))
	var guid [16]byte
	copy(guid[:], sum[:16])

	hw := &hardware{ch: ch, console: console, nic: nic}
	b := bmc.New(info, guid, hw, bmc.WithClock(clock.Real), bmc.WithCipherSuites(cipherSuites), bmc.WithV15Disabled())
	u, err := b.Users.Add(2, user)
	if err != nil {
		return nil, fmt.Errorf("while adding the BMC user of %s: %w", ch.name, err)
	}
	u.SetPassword([]byte(password))
	u.Enabled = true
	u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}

	return server.NewServer(b, udpTransport{conn}, server.WithHandlerRegistry(registry(ch))), nil
}

// registry is go-ipmi's standard command set with System Boot Options
// answered by the chassis' own store, which keeps parameter 5 byte-exact
// and honours parameter 3 (the reference handlers do neither).
func registry(ch *chassis) *handlers.Registry {
	reg := handlers.NewRegistry()
	handlers.RegisterAllHandlers(reg)
	reg.RegisterFunc(types.CommandSetSystemBootOptions, func(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
		if len(req) < 1 {
			return nil, types.CodeRequestDataTruncated, nil
		}
		return nil, ch.setBootOption(req[0]&0x7f, req[1:]), nil
	})
	reg.RegisterFunc(types.CommandGetSystemBootOptions, func(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
		if len(req) < 1 {
			return nil, types.CodeRequestDataTruncated, nil
		}
		data, cc := ch.getBootOption(req[0] & 0x7f)
		return data, cc, nil
	})
	return reg
}

// udpTransport adapts a UDP socket to go-ipmi's transport and reports its
// port, which the server advertises for SOL payloads.
type udpTransport struct{ c *net.UDPConn }

func (t udpTransport) ReadFrom(b []byte) (int, net.Addr, error)  { return t.c.ReadFrom(b) }
func (t udpTransport) WriteTo(b []byte, a net.Addr) (int, error) { return t.c.WriteTo(b, a) }
func (t udpTransport) Close() error                              { return t.c.Close() }
func (t udpTransport) LocalAddr() net.Addr                       { return t.c.LocalAddr() }

// hardware is the go-ipmi HAL of a virtual BMC: chassis, console and the
// BMC's own NIC; sensors, storage, GPIO and I2C do not exist.
type hardware struct {
	ch      *chassis
	console hal.ConsoleHAL
	nic     *nicInfo
}

func (h *hardware) Chassis() hal.ChassisHAL { return chassisHAL{h.ch} }
func (h *hardware) Sensors() hal.SensorHAL  { return nil }
func (h *hardware) Storage() hal.StorageHAL { return nil }
func (h *hardware) Network() hal.NetworkHAL { return h.nic }
func (h *hardware) GPIO() hal.GPIOHAL       { return nil }
func (h *hardware) I2C() hal.I2CHAL         { return nil }
func (h *hardware) Console() hal.ConsoleHAL {
	if h.console == nil {
		return nil // a nil *T in an interface would look like a console
	}
	return h.console
}
func (h *hardware) Close() error { return nil }

// chassisHAL maps the Chassis Control actions (Table 28-3) onto the chassis.
type chassisHAL struct{ ch *chassis }

func (c chassisHAL) PowerState(ctx context.Context) (bool, error) { return c.ch.reportedOn(ctx) }
func (c chassisHAL) SetPower(ctx context.Context, on bool) error {
	if on {
		return c.ch.powerOn(ctx)
	}
	return c.ch.powerOff(ctx)
}
func (c chassisHAL) PowerCycle(ctx context.Context) error { return c.ch.cycle(ctx, "power cycle") }
func (c chassisHAL) ColdReset(ctx context.Context) error  { return c.ch.cycle(ctx, "hard reset") }

// WarmReset is what go-ipmi calls for action 05h, "soft shutdown via ACPI".
func (c chassisHAL) WarmReset(ctx context.Context) error          { return c.ch.softOff(ctx) }
func (c chassisHAL) Identify(context.Context, uint8) error        { return nil }
func (c chassisHAL) IntrusionState(context.Context) (bool, error) { return false, hal.ErrNotSupported }

func (c chassisHAL) SetBootFlags(_ context.Context, f *types.BootOptionParam_BootFlags) error {
	if cc := c.ch.setBootOption(paramBootFlags, f.Pack()); cc != types.CodeOK {
		return cc
	}
	return nil
}

func (c chassisHAL) GetBootFlags(context.Context) (*types.BootOptionParam_BootFlags, error) {
	data, cc := c.ch.getBootOption(paramBootFlags)
	if cc != types.CodeOK {
		return nil, cc
	}
	var f types.BootOptionParam_BootFlags
	if err := f.Unpack(data[2:]); err != nil {
		return nil, err
	}
	return &f, nil
}

func (c chassisHAL) SetBootInfoAcknowledge(_ context.Context, a *types.BootOptionParam_BootInfoAcknowledge) error {
	if cc := c.ch.setBootOption(paramBootInfoAck, a.Pack()); cc != types.CodeOK {
		return cc
	}
	return nil
}

func (c chassisHAL) GetBootInfoAcknowledge(context.Context) (*types.BootOptionParam_BootInfoAcknowledge, error) {
	data, cc := c.ch.getBootOption(paramBootInfoAck)
	if cc != types.CodeOK {
		return nil, cc
	}
	var a types.BootOptionParam_BootInfoAcknowledge
	if err := a.Unpack(data[2:]); err != nil {
		return nil, err
	}
	return &a, nil
}

// nicInfo is the BMC's own address as `lan print` shows it; it changes when
// the DHCP lease does.
type nicInfo struct {
	mu  sync.Mutex
	cfg hal.IPConfig
}

func (n *nicInfo) GetConfig(context.Context) (*hal.IPConfig, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cfg
	return &c, nil
}

// SetConfig is refused: the address belongs to DHCP (or the test).
func (n *nicInfo) SetConfig(context.Context, *hal.IPConfig) error { return hal.ErrNotSupported }

func (n *nicInfo) set(cfg hal.IPConfig) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg = cfg
}
