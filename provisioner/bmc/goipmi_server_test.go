package bmc

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// testBMC is go-ipmi's reference BMC server (the one behind its
// cmd/goipmi-server) running in-process on a loopback UDP port, with a
// chassis whose faults the test sets.
type testBMC struct {
	addr    string // 127.0.0.1:PORT
	chassis *faultyChassis
	serial  *mock.FakeConsoleConn // the node's serial port, when console is on

	mu          sync.Mutex
	bootOptions [][]byte // request data of every Set System Boot Options, as on the wire
	busy        int      // Get Chassis Status answers "node busy" this many times
}

// recordingRegistry is go-ipmi's full command set with Set System Boot
// Options recorded on the way through, so tests see the exact bytes sent.
func (tb *testBMC) recordingRegistry() *handlers.Registry {
	full := handlers.NewRegistry()
	handlers.RegisterAllHandlers(full)
	rec := handlers.NewRegistry()
	handlers.RegisterAllHandlers(rec)
	cmd := types.CommandSetSystemBootOptions
	rec.RegisterFunc(cmd, func(ctx context.Context, hctx *handlers.HandlerContext, data []byte) ([]byte, types.CompletionCode, error) {
		tb.mu.Lock()
		tb.bootOptions = append(tb.bootOptions, append([]byte(nil), data...))
		tb.mu.Unlock()
		return full.Dispatch(ctx, hctx, uint8(cmd.NetFn), cmd.ID, data)
	})
	status := types.CommandGetChassisStatus
	rec.RegisterFunc(status, func(ctx context.Context, hctx *handlers.HandlerContext, data []byte) ([]byte, types.CompletionCode, error) {
		tb.mu.Lock()
		busy := tb.busy > 0
		if busy {
			tb.busy--
		}
		tb.mu.Unlock()
		if busy {
			return nil, types.CompletionCode(0xc0), nil // node busy
		}
		return full.Dispatch(ctx, hctx, uint8(status.NetFn), status.ID, data)
	})
	return rec
}

// setBootOptions returns the recorded Set System Boot Options requests.
func (tb *testBMC) setBootOptions() [][]byte {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([][]byte(nil), tb.bootOptions...)
}

const (
	testUser     = "admin"
	testPassword = "s3cret-Pa55"
)

// faultyChassis wraps go-ipmi's mock chassis: forget drops boot-flag writes
// (as some BMCs do), writes counts them.
type faultyChassis struct {
	*mock.Chassis
	mu        sync.Mutex
	forget    int // writes still to drop; -1 drops all
	writes    int
	slow      bool
	cycles    int
	resets    int
	active    int
	maxActive int
}

func (c *faultyChassis) SetBootFlags(ctx context.Context, f *types.BootOptionParam_BootFlags) error {
	c.mu.Lock()
	c.writes++
	drop := c.forget != 0
	if c.forget > 0 {
		c.forget--
	}
	c.mu.Unlock()
	if drop {
		return nil
	}
	return c.Chassis.SetBootFlags(ctx, f)
}

// PowerState counts concurrent readers when slow is set, so a test can see
// how many sessions run at once.
func (c *faultyChassis) PowerState(ctx context.Context) (bool, error) {
	c.mu.Lock()
	slow := c.slow
	c.active++
	if c.active > c.maxActive {
		c.maxActive = c.active
	}
	c.mu.Unlock()
	if slow {
		time.Sleep(50 * time.Millisecond) // lets concurrent sessions overlap
	}
	c.mu.Lock()
	c.active--
	c.mu.Unlock()
	return c.Chassis.PowerState(ctx)
}

func (c *faultyChassis) PowerCycle(ctx context.Context) error {
	c.mu.Lock()
	c.cycles++
	c.mu.Unlock()
	return c.Chassis.PowerCycle(ctx)
}

func (c *faultyChassis) ColdReset(ctx context.Context) error {
	c.mu.Lock()
	c.resets++
	c.mu.Unlock()
	return c.Chassis.ColdReset(ctx)
}

// counts returns the power cycles and hard resets received.
func (c *faultyChassis) counts() (cycles, resets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cycles, c.resets
}

func (c *faultyChassis) bootWrites() int { c.mu.Lock(); defer c.mu.Unlock(); return c.writes }

type faultyHAL struct {
	*mock.HAL
	chassis *faultyChassis
}

func (h *faultyHAL) Chassis() hal.ChassisHAL { return h.chassis }

func startGoIPMI(t testing.TB, withConsole bool) *testBMC {
	t.Helper()
	base := mock.New()
	ch := &faultyChassis{Chassis: base.Chassis().(*mock.Chassis)}
	h := &faultyHAL{HAL: base, chassis: ch}
	tb := &testBMC{chassis: ch}
	if withConsole {
		tb.serial = &mock.FakeConsoleConn{}
		base.SetConsole(&mock.Console{Conn: tb.serial})
	}
	var guid [16]byte
	copy(guid[:], "racker-test-bmc")
	b := gobmc.New(gobmc.DeviceInfo{
		DeviceID: 32, DeviceRevision: 1, FirmwareMajor: 2, FirmwareMinor: 0x15,
		IPMIVersion: 0x02, ManufacturerID: 0x000157, ProductID: 0x0b0b,
		AdditionalDeviceSupport: 0x39,
	}, guid, h, gobmc.WithClock(clock.Real))
	u, err := b.Users.Add(2, testUser)
	if err != nil {
		t.Fatalf("add BMC user: %v", err)
	}
	u.SetPassword([]byte(testPassword))
	u.Enabled = true
	u.ChannelAccess[1] = gobmc.UserChannelAccess{MaxPrivilege: gobmc.PrivilegeLevelAdministrator, Enabled: true}

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	tb.addr = pc.LocalAddr().String()
	srv := server.NewServer(b, udp.Wrap(pc), server.WithHandlerRegistry(tb.recordingRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
			t.Logf("go-ipmi server: %v", err)
		}
	})
	return tb
}
