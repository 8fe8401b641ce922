package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/consolelog"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// provisionFlags are the choices bootstrap and reprovision share: how to
// drive the nodes and where the boot services are.
type provisionFlags struct {
	parallel  int
	onFailure string
	retries   int
	uefiTypes []string
	bmcDriver string
	insecure  bool
	ipmiV15   bool
	bootURL   string
	boot      bootFlags
	timeouts  orchestrator.Timeouts
	osGiven   bool // --os or --os-version on the command line
	// recordConsoles: record every node's console to STATE/console while
	// the run lasts.
	recordConsoles bool

	// bmcInterval spaces the starts of BMC operations rack-wide (0: not
	// at all); bmcConcurrency bounds them.
	bmcInterval    time.Duration
	bmcConcurrency int
}

func addProvisionFlags(fs *pflag.FlagSet, f *provisionFlags) {
	fs.IntVar(&f.parallel, "parallel", orchestrator.DefaultParallel, "nodes in flight at once")
	fs.DurationVar(&f.bmcInterval, "bmc-interval", orchestrator.DefaultBMCInterval,
		"time between the starts of two BMC operations, rack-wide (0: no spacing); each node takes three")
	fs.IntVar(&f.bmcConcurrency, "bmc-concurrency", orchestrator.DefaultBMCConcurrency, "BMC operations at once, rack-wide")
	fs.StringVar(&f.onFailure, "on-failure", "", "what a node's failure does: retry, exclude, ask or cancel (default: retry --retries times, then ask on a terminal, else exclude)")
	fs.IntVar(&f.retries, "retries", 3, "retries of a failed node under --on-failure retry")
	fs.StringSliceVar(&f.uefiTypes, "uefi-types", nil, "node types whose firmware boots UEFI (boot flags get the EFI bit)")
	fs.StringVar(&f.bmcDriver, "bmc-driver", "", bmcDriverHelp)
	fs.BoolVar(&f.insecure, "insecure", false, insecureHelp)
	fs.BoolVar(&f.ipmiV15, "ipmi-allow-v15", false, ipmiV15Help)
	fs.StringVar(&f.bootURL, "boot-services", "", "URL of running boot services' management views (default: http://127.0.0.1:HTTP-PORT, started in-process when none answers)")
	fs.BoolVar(&f.recordConsoles, "record-consoles", true, "record every node's serial console to STATE/console/HOSTNAME.log while the run lasts (racker describe shows the tail)")
	addBootFlags(fs, &f.boot) // for the boot services, when they run in-process
	t := orchestrator.DefaultTimeouts
	fs.DurationVar(&f.timeouts.BMC, "bmc-timeout", t.BMC, "how long a node's BMC may not answer")
	fs.DurationVar(&f.timeouts.Netboot, "netboot-timeout", t.Netboot, "from power-on to the node's first netboot request")
	fs.DurationVar(&f.timeouts.Install, "install-start-timeout", t.Install, "from netboot to the install starting")
	fs.DurationVar(&f.timeouts.Installed, "install-timeout", t.Installed, "for the install itself")
	fs.DurationVar(&f.timeouts.Boot, "boot-timeout", t.Boot, "from the install to the installed system's booted callback")
}

// specsFor turns plan nodes into the orchestrator's node specs; only (when
// non-nil) limits them to some primary MACs.
func specsFor(p *plan.Plan, uefiTypes []string, only map[string]bool) []orchestrator.NodeSpec {
	uefi := map[string]bool{}
	for _, t := range uefiTypes {
		uefi[strings.TrimSpace(t)] = true
	}
	var out []orchestrator.NodeSpec
	for _, n := range p.Servers() {
		if only != nil && !only[n.PrimaryMAC] {
			continue
		}
		out = append(out, orchestrator.NodeSpec{PrimaryMAC: n.PrimaryMAC, BMCMAC: n.BMCMAC, Hostname: n.Hostname,
			Role: string(n.Role), Type: n.Type, EFI: uefi[n.Type], Exclude: n.Role == plan.Excluded, ExcludeReason: "excluded with --exclude"})
	}
	return out
}

func names(ns []orchestrator.Node) string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%s (%s): %s", n.Hostname, n.PrimaryMAC, n.Reason))
	}
	return strings.Join(out, "; ")
}

// provisioning is one provisioning run, what bootstrap and reprovision
// have in common: the boot services (a running racker serve, or started
// in-process), one orchestrator run over some of the plan's nodes with the
// live view and a summary, and an exit error naming the nodes that failed.
type provisioning struct {
	command string // names the run in its errors: bootstrap, reprovision
	inv     *inventory.Inventory
	plan    *plan.Plan
	only    map[string]bool // the primary MACs to provision; nil: every node of the plan
	flags   *provisionFlags
	// noWait: a racker serve must be running already, as it carries on
	// once the run stops at stopAt (reprovision --no-wait).
	noWait bool
	stopAt orchestrator.Phase
	// before runs once the boot services answer, before the orchestrator
	// (reprovision orders its nodes' reinstalls; bootstrap starts lokoctl).
	before func(svc *bootServices) error
	// after runs once every node is provisioned, with the boot services
	// still up (bootstrap's cluster profile).
	after func(svc *bootServices) error
	// above, when set, shows another program's lines (lokoctl's) above
	// the live view while it is up.
	above *linesAbove
}

func (pr *provisioning) run(ctx context.Context, env *Env) error {
	svc, err := ensureBootServices(ctx, env, pr.inv, pr.plan, pr.flags, pr.noWait)
	if err != nil {
		if pr.noWait {
			return fmt.Errorf("%s --no-wait: %w", pr.command, err)
		}
		return err
	}
	defer svc.stop()
	if pr.before != nil {
		if err := pr.before(svc); err != nil {
			return err
		}
	}
	specs := specsFor(pr.plan, pr.flags.uefiTypes, pr.only)
	res, err := provision(svc.ctx, env, pr.inv, pr.plan, specs, pr.flags, svc, pr.stopAt, pr.above)
	if err != nil {
		return err
	}
	if failed := res.Failed(); len(failed) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%s: %d node(s) failed: %s", pr.command, len(failed), names(failed))}
	}
	if pr.after != nil {
		return pr.after(svc)
	}
	return nil
}

// provision runs the orchestrator over specs with the live view, then
// prints the summary.
func provision(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, specs []orchestrator.NodeSpec,
	f *provisionFlags, svc *bootServices, stopAt orchestrator.Phase, above *linesAbove) (orchestrator.Result, error) {
	log := env.Logger()
	policy, err := policyFrom(env, f)
	if err != nil {
		return orchestrator.Result{}, err
	}
	targets, err := bmcTargetsFor(env, inv, p, f.bmcDriver, f.insecure, f.ipmiV15, svc.client)
	if err != nil {
		return orchestrator.Result{}, err
	}
	opener := orchestrator.ControllerOpener(targets.urlFor, targets.opts)
	stopRecording := func() {}
	if f.recordConsoles {
		stopRecording = recordConsoles(ctx, env, specs, targets)
	}
	defer stopRecording()
	// On a terminal the live table is the progress; info lines would
	// scroll it away. Elsewhere the log lines are the progress.
	var view *liveView
	var onChange func([]orchestrator.Node)
	if env.Interactive() {
		view = newLiveView(env.Stdout, env.termSize)
		defer view.Close()
		onChange = view.Update
		if above != nil {
			above.attach(view)
			defer above.attach(nil)
		}
		if !env.Verbose {
			log = slog.New(minLevel{log.Handler(), slog.LevelWarn})
		}
	}
	// What the nodes install: the release Racker serves itself, else --os
	// when given; a running racker serve does not say, so then a node keeps
	// its earlier record.
	osLabel := svc.release
	if osLabel == "" && f.osGiven {
		osLabel = f.boot.osName + " " + f.boot.osVersion
	}
	cfg := orchestrator.Config{StateDir: env.StateDir, Nodes: specs, Boot: svc.client, OpenBMC: opener,
		Policy: policy, Timeouts: f.timeouts, OS: osLabel, StopAt: stopAt, Logger: log, OnChange: onChange}
	if err := f.pace(&cfg); err != nil {
		return orchestrator.Result{}, err
	}
	if policy.OnFailure == orchestrator.Ask || policy.AfterRetries == orchestrator.Ask {
		cfg.Ask = askFailure(env, view)
	}
	res, err := orchestrator.Run(ctx, cfg)
	stopRecording()
	if view != nil {
		view.Close()
	}
	fmt.Fprintln(env.Stdout)
	var b strings.Builder
	writeProgress(&b, res.Nodes, time.Now(), 0)
	width, _ := env.termSize()
	io.WriteString(env.Stdout, fitWidth(b.String(), width))
	return res, err
}

// pace puts --parallel, --bmc-concurrency and --bmc-interval into cfg,
// checked.
func (f *provisionFlags) pace(cfg *orchestrator.Config) error {
	switch {
	case f.parallel < 1:
		return fmt.Errorf("--parallel %d: want 1 or more", f.parallel)
	case f.bmcConcurrency < 1:
		return fmt.Errorf("--bmc-concurrency %d: want 1 or more", f.bmcConcurrency)
	case f.bmcInterval < 0:
		return fmt.Errorf("--bmc-interval %s: want 0 (no spacing) or more", f.bmcInterval)
	}
	cfg.Parallel, cfg.BMCConcurrency, cfg.BMCInterval = f.parallel, f.bmcConcurrency, f.bmcInterval
	if f.bmcInterval == 0 {
		cfg.BMCInterval = -1 // none, where the orchestrator's zero means its default
	}
	return nil
}

func policyFrom(env *Env, f *provisionFlags) (orchestrator.Policy, error) {
	if f.retries < 0 {
		return orchestrator.Policy{}, fmt.Errorf("--retries %d: want 0 or more", f.retries)
	}
	then := orchestrator.Exclude
	if env.Interactive() {
		then = orchestrator.Ask
	}
	if f.onFailure == "" {
		return orchestrator.Policy{OnFailure: orchestrator.Retry, Retries: f.retries, AfterRetries: then}, nil
	}
	m, err := orchestrator.ParseFailureMode(f.onFailure)
	if err != nil {
		return orchestrator.Policy{}, err
	}
	if m == orchestrator.Ask && !env.Interactive() {
		return orchestrator.Policy{}, errors.New("--on-failure ask needs a terminal; use retry, exclude or cancel")
	}
	return orchestrator.Policy{OnFailure: m, Retries: f.retries, AfterRetries: then}, nil
}

// bmcTargets say where each node's BMC is: its URL (asked for every
// operation) and the options every controller opens with.
type bmcTargets struct {
	urlFor func(ctx context.Context, n orchestrator.NodeSpec) (string, error)
	opts   bmc.Options
}

// bmcTargetsFor reaches a node's BMC at the address the boot services
// report for it (its DHCP lease, asked again for every operation: the
// lease may arrive mid-run), else at the planned address, over the
// protocol of its type (bmcReach). The "fake" driver (in-process fake://
// BMCs named by primary MAC) is for tests.
func bmcTargetsFor(env *Env, inv *inventory.Inventory, p *plan.Plan, driver string, insecure, ipmiV15 bool, boot *api.Client) (bmcTargets, error) {
	planned := map[string]netip.Addr{}
	for _, n := range p.All() {
		planned[n.PrimaryMAC] = n.BMCIP
	}
	opts := env.bmcOptionsFor(env.bmcOptions(bmc.Options{Credentials: inv.Credentials, Logger: env.Logger()}, ipmiV15), insecure)
	reach, err := env.newBMCReach(driver, opts)
	if err != nil {
		return bmcTargets{}, err
	}
	urlFor := func(ctx context.Context, n orchestrator.NodeSpec) (string, error) {
		var a netip.Addr
		if proto := reach.protocol(n.Type); proto != "libvirt" && proto != "fake" {
			a = bmcAddress(ctx, env.Logger(), boot, n.PrimaryMAC, planned[n.PrimaryMAC])
		}
		name := n.PrimaryMAC
		if n.Hostname != "" {
			name = n.Hostname + " (" + n.PrimaryMAC + ")"
		}
		return reach.url(ctx, name, n.PrimaryMAC, n.BMCMAC, n.Type, a)
	}
	return bmcTargets{urlFor: urlFor, opts: opts}, nil
}

const ipmiV15Help = "allow IPMI 1.5 (MD5, never straight password) for BMCs that have never answered IPMI 2.0; off, Racker speaks IPMI 2.0 only"

// bmcOptions adds what keeps BMC sessions from being downgraded: the
// protocol each BMC answered, remembered in the state folder (a BMC that
// spoke IPMI 2.0 is never spoken to otherwise), and the IPMI 1.5 opt-in.
func (env *Env) bmcOptions(o bmc.Options, ipmiV15 bool) bmc.Options {
	o.Protocols = &bmc.FileProtocols{Path: filepath.Join(env.StateDir, bmc.ProtocolsFile)}
	o.AllowIPMI15 = ipmiV15
	return o
}

// recordConsoles records the console of every node of the run that is not
// left out, until the returned stop is called (it waits for the logs to be
// closed).
func recordConsoles(ctx context.Context, env *Env, specs []orchestrator.NodeSpec, t bmcTargets) (stop func()) {
	rec := &consolelog.Recorder{StateDir: env.StateDir, Logger: env.Logger().With("part", "console")}
	rctx, cancel := context.WithCancel(ctx)
	for _, s := range specs {
		if s.Exclude {
			continue
		}
		name := s.Hostname
		if name == "" {
			name = s.PrimaryMAC
		}
		rec.Record(rctx, name, func(ctx context.Context) (io.ReadCloser, error) {
			u, err := t.urlFor(ctx, s)
			if err != nil {
				return nil, err
			}
			opts := t.opts
			opts.Node, opts.PrimaryMAC = name+" ("+s.PrimaryMAC+")", s.PrimaryMAC
			c, err := openConsoleBMC(ctx, bmcTarget{url: u, opts: opts, label: opts.Node})
			if err != nil {
				return nil, err
			}
			con, err := c.Console(ctx)
			if err != nil {
				c.Close()
				return nil, err
			}
			return closeBoth{con, c}, nil
		})
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); rec.Wait() }) }
}

// closeBoth is a console whose Close also closes its controller.
type closeBoth struct {
	io.ReadWriteCloser
	c bmc.Controller
}

func (b closeBoth) Close() error {
	err := b.ReadWriteCloser.Close()
	b.c.Close()
	return err
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

// fakeBMCName is the fake:// BMC of a node under --bmc-driver fake.
func fakeBMCName(primaryMAC string) string { return "node-" + strings.ReplaceAll(primaryMAC, ":", "-") }

// askFailure asks on the terminal what to do about a failed node, with
// the live view paused; failures that come together are asked one by one.
func askFailure(env *Env, view *liveView) func(context.Context, orchestrator.Node, string) orchestrator.FailureMode {
	var one sync.Mutex
	return func(ctx context.Context, n orchestrator.Node, reason string) orchestrator.FailureMode {
		one.Lock()
		defer one.Unlock()
		if view != nil {
			view.Pause()
			defer view.Resume()
		}
		for ctx.Err() == nil {
			answer, err := env.ask(fmt.Sprintf("\nnode %s (%s) failed: %s\n[r]etry, [e]xclude (and power off), [c]ancel the run? ", n.Hostname, n.PrimaryMAC, reason))
			switch strings.ToLower(answer) {
			case "r", "retry":
				return orchestrator.Retry
			case "e", "exclude":
				return orchestrator.Exclude
			case "c", "cancel":
				return orchestrator.Cancel
			}
			if err != nil {
				return orchestrator.Exclude
			}
		}
		return orchestrator.Cancel
	}
}
