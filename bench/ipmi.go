package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/simulator/vbmc"
)

// memMachine is an in-memory machine behind the bench's BMC: the IPMI server
// and the network are real, only the hardware is not (what is measured is
// the IPMI client side).
type memMachine struct {
	mu sync.Mutex
	on bool
}

func (m *memMachine) PoweredOn(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}
func (m *memMachine) Start(context.Context, vbmc.BootDevice) error { m.set(true); return nil }
func (m *memMachine) Stop(context.Context) error                   { m.set(false); return nil }
func (m *memMachine) Shutdown(context.Context) error               { m.set(false); return nil }
func (m *memMachine) GuestEvents(ctx context.Context) (<-chan vbmc.GuestEvent, error) {
	ch := make(chan vbmc.GuestEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
func (m *memMachine) set(on bool) { m.mu.Lock(); m.on = on; m.mu.Unlock() }

// ipmiTarget is a BMC the IPMI figures are measured against.
type ipmiTarget struct {
	name  string // for the table
	addr  netip.AddrPort
	suite int // the RMCP+ cipher suite both clients end up with
}

// benchIPMI measures `power status` through Racker's ipmi:// driver against
// two BMCs that are not Racker's own code: go-ipmi's reference server
// (what the simulator's vBMC is built on, in this process over UDP
// loopback) and OpenIPMI's ipmi_sim (a separate program), with ipmitool
// beside each: one session kept (Racker's kept session; ipmitool exec
// running the commands in one session), a new session per operation
// (Racker with keeping off; an ipmitool process per command), and 20
// callers at once.
func benchIPMI(r *results, work string, short bool) error {
	d := 4 * time.Second
	if short {
		d = time.Second
	}
	user, pass := "bench", "bench-password"
	passFile := filepath.Join(work, "ipmi_password")
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan netip.AddrPort, 1)
	go vbmc.Run(ctx, vbmc.Config{Name: "bench", Machine: &memMachine{on: true}, Static: netip.MustParsePrefix("127.0.0.1/8"),
		Port: -1, User: user, Password: pass, Logger: logger.With("component", "vbmc"),
		OnListen: func(a netip.AddrPort) { listening <- a }})
	var targets []ipmiTarget
	select {
	case a := <-listening:
		targets = append(targets, ipmiTarget{"the vBMC (go-ipmi's server, in this process, UDP loopback; cipher suite 17)", a, 17})
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the bench BMC did not start")
	}
	simAddr, stopSim, err := startIPMISim(work, user, pass)
	if err != nil {
		return err
	}
	defer stopSim()
	// ipmi_sim offers no HMAC-SHA256: Racker falls back to suite 3, and
	// ipmitool is told to use it.
	targets = append(targets, ipmiTarget{"OpenIPMI's ipmi_sim (a separate process, UDP loopback; cipher suite 3)", netip.MustParseAddrPort(simAddr), 3})

	for _, tg := range targets {
		if err := benchIPMITarget(ctx, r, tg, user, pass, passFile, work, d); err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
	}
	return nil
}

func benchIPMITarget(ctx context.Context, r *results, tg ipmiTarget, user, pass, passFile, work string, d time.Duration) error {
	url := "ipmi://" + tg.addr.String()
	kept := bmc.Options{Credentials: inventory.Credentials{User: user, Password: pass}, Node: "bench"}
	fresh := kept
	fresh.SessionIdle = -1
	defer bmc.CloseIdleSessions()
	// Each operation opens its own controller, as the orchestrator does:
	// what is kept is the driver's, not the caller's.
	op := func(o bmc.Options) func() error {
		return func() error {
			c, err := bmc.Open(ctx, url, o)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.PowerState(ctx)
			return err
		}
	}
	tool := ipmitool{addr: tg.addr, suite: tg.suite, user: user, passFile: passFile, dir: work}
	keptRate, err := opsPerSecond(d, 1, op(kept))
	if err != nil {
		return fmt.Errorf("racker, session kept: %w", err)
	}
	toolKept, err := tool.execRate(d)
	if err != nil {
		return err
	}
	freshRate, err := opsPerSecond(d, 1, op(fresh))
	if err != nil {
		return fmt.Errorf("racker, new session each: %w", err)
	}
	toolFresh, toolFreshErrs, err := tool.processRate(d, 1)
	if err != nil {
		return err
	}
	// 20 callers at once on one BMC: Racker keeps its bound of
	// Options.MaxSessions (2) sessions per BMC, so they queue, as they
	// would in the orchestrator; the ipmitool processes have no bound.
	par, err := opsPerSecond(d, bmcParallel, op(kept))
	if err != nil {
		return fmt.Errorf("racker, %d in parallel: %w", bmcParallel, err)
	}
	toolPar, toolParErrs, err := tool.processRate(d, bmcParallel)
	if err != nil {
		return err
	}
	sec := "IPMI power status against " + tg.name
	r.add(row{Section: sec, Figure: "ops/s, one session kept", Unit: "/s", Racker: keptRate, Peer: toolKept, PeerIs: "ipmitool exec (one session)",
		HigherIsBetter: true, Headline: strings.Contains(tg.name, "ipmi_sim")})
	r.add(row{Section: sec, Figure: "ops/s, a new session each", Unit: "/s", Racker: freshRate, Peer: toolFresh, PeerIs: "an ipmitool process each",
		HigherIsBetter: true, Note: strings.TrimPrefix(toolFreshErrs.note(), "; ")})
	r.add(row{Section: sec, Figure: fmt.Sprintf("ops/s, %d callers at once", bmcParallel), Unit: "/s", Racker: par, Peer: toolPar,
		PeerIs: fmt.Sprintf("%d ipmitool processes at once", bmcParallel), HigherIsBetter: true,
		Note: "Racker: at most 2 sessions per BMC" + toolParErrs.note()})
	return nil
}

// ipmitool runs Debian's ipmitool against one BMC (lanplus, the password
// from a file: never on a command line).
type ipmitool struct {
	addr     netip.AddrPort
	suite    int
	user     string
	passFile string
	dir      string
}

func (t ipmitool) cmd(args ...string) *exec.Cmd {
	base := []string{"-I", "lanplus", "-C", fmt.Sprint(t.suite), "-H", t.addr.Addr().String(), "-p", fmt.Sprint(t.addr.Port()), "-U", t.user, "-f", t.passFile}
	return exec.Command("ipmitool", append(base, args...)...)
}

// execRate runs `power status` n times in one ipmitool session (exec from
// a file), n sized to take about d.
func (t ipmitool) execRate(d time.Duration) (float64, error) {
	run := func(n int) (time.Duration, error) {
		f := filepath.Join(t.dir, "ipmitool-exec")
		if err := os.WriteFile(f, []byte(strings.Repeat("power status\n", n)), 0o644); err != nil {
			return 0, err
		}
		start := time.Now()
		out, err := t.cmd("exec", f).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("ipmitool exec: %w: %s", err, out)
		}
		if got := strings.Count(string(out), "Chassis Power is"); got != n {
			return 0, fmt.Errorf("ipmitool exec answered %d of %d power status commands: %.300s", got, n, out)
		}
		return time.Since(start), nil
	}
	took, err := run(50)
	if err != nil {
		return 0, err
	}
	n := max(50, int(float64(50)*d.Seconds()/took.Seconds()))
	if took, err = run(n); err != nil {
		return 0, err
	}
	return float64(n) / took.Seconds(), nil
}

// processRate runs `power status` as one ipmitool process per command,
// from callers at once, for d. A run that fails is counted apart and
// reported with the figure: a BMC keeps a few session slots (go-ipmi's
// server the IPMI minimum of 4), so 20 processes at once are partly
// refused, and on a busy machine most of them can be; that is what the
// peer does, not a broken bench. Only a single caller that never gets a
// session is an error: then the setup is broken.
func (t ipmitool) processRate(d time.Duration, callers int) (float64, ipmitoolFailures, error) {
	var failed, ok atomic.Int64
	var first atomic.Value
	rate, _ := opsPerSecond(d, callers, func() error {
		out, err := t.cmd("power", "status").CombinedOutput()
		if err != nil {
			failed.Add(1)
			first.CompareAndSwap(nil, fmt.Sprintf("%v: %s", err, out))
			return nil
		}
		ok.Add(1)
		return nil
	})
	f := ipmitoolFailures{failed: int(failed.Load()), runs: int(failed.Load() + ok.Load())}
	if callers == 1 && failed.Load() > ok.Load() {
		return 0, f, fmt.Errorf("ipmitool failed %d of %d times: %v", f.failed, f.runs, first.Load())
	}
	// opsPerSecond counted the failures too: take them out.
	if f.runs > 0 {
		rate = rate * float64(ok.Load()) / float64(f.runs)
	}
	return rate, f, nil
}

// ipmitoolFailures counts the ipmitool runs of a figure that got no answer.
type ipmitoolFailures struct{ failed, runs int }

func (f ipmitoolFailures) note() string {
	if f.failed == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of %d ipmitool runs failed and were not counted", f.failed, f.runs)
}

// bmcParallel is how many callers the parallel BMC figures run at once.
const bmcParallel = 20

// opsPerSecond runs op from n goroutines for d and returns the completed
// operations per second; the first error ends the run.
func opsPerSecond(d time.Duration, n int, op func() error) (float64, error) {
	var (
		mu    sync.Mutex
		total int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for time.Since(start) < d {
				if err := op(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				k++
			}
			mu.Lock()
			total += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(total) / time.Since(start).Seconds(), nil
}
