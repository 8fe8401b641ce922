package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/dhcp"
	"github.com/racker/racker/provisioner/bootsvc/leases"
	"github.com/racker/racker/provisioner/bootsvc/tftp"
	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

func init() { register(newBootstrapCmd) }

// provisionFlags are the choices bootstrap and reprovision share: how to
// drive the nodes and where the boot services are.
type provisionFlags struct {
	parallel  int
	onFailure string
	retries   int
	uefiTypes []string
	bmcDriver string
	bootURL   string
	serve     serveFlags
	timeouts  orchestrator.Timeouts
	osGiven   bool // --os or --os-version on the command line
}

func addProvisionFlags(fs *pflag.FlagSet, f *provisionFlags) {
	fs.IntVar(&f.parallel, "parallel", 20, "nodes in flight at once")
	fs.StringVar(&f.onFailure, "on-failure", "", "what a node's failure does: retry, exclude, ask or cancel (default: retry --retries times, then ask on a terminal, else exclude)")
	fs.IntVar(&f.retries, "retries", 3, "retries of a failed node under --on-failure retry")
	fs.StringSliceVar(&f.uefiTypes, "uefi-types", nil, "node types whose firmware boots UEFI (boot flags get the EFI bit)")
	fs.StringVar(&f.bmcDriver, "bmc-driver", "ipmi", "how to reach the nodes' BMCs: ipmi, or libvirt (local VMs without BMCs)")
	fs.StringVar(&f.bootURL, "boot-services", "", "URL of running boot services (default: http://MANAGEMENT-ADDRESS:HTTP-PORT, started in-process when none answers)")
	fs.IntVar(&f.serve.httpPort, "http-port", 8080, "HTTP port of the boot services")
	fs.StringVar(&f.serve.tftpRoot, "tftp-root", tftp.DefaultRoot, "folder with the iPXE binaries, when the boot services run in-process")
	fs.DurationVar(&f.serve.leaseTime, "lease-time", dhcp.DefaultLeaseTime, "DHCP lease time, when the boot services run in-process")
	fs.StringVar(&f.serve.osName, "os", "flatcar", "OS to install: flatcar or testos")
	fs.StringVar(&f.serve.osVersion, "os-version", "current", "OS version (flatcar: current or a version; testos: a release folder)")
	fs.StringVar(&f.serve.channel, "flatcar-channel", "stable", "Flatcar channel: stable, beta, alpha or lts")
	fs.StringVar(&f.serve.testosDir, "testos-dir", "", "folder with the test OS's release folders (default: INSTALL-DIR/testos)")
	fs.StringVar(&f.serve.imageKey, "image-key", "", imageKeyUsage)
	fs.StringVar(&f.serve.mirror, "os-mirror", "", mirrorUsage)
	t := orchestrator.DefaultTimeouts
	fs.DurationVar(&f.timeouts.BMC, "bmc-timeout", t.BMC, "how long a node's BMC may not answer")
	fs.DurationVar(&f.timeouts.Netboot, "netboot-timeout", t.Netboot, "from power-on to the node's first netboot request")
	fs.DurationVar(&f.timeouts.Install, "install-start-timeout", t.Install, "from netboot to the install starting")
	fs.DurationVar(&f.timeouts.Installed, "install-timeout", t.Installed, "for the install itself")
	fs.DurationVar(&f.timeouts.Boot, "boot-timeout", t.Boot, "from the install to the installed system's booted callback")
}

type bootstrapFlags struct {
	plan      PlanFlags
	prov      provisionFlags
	profile   string
	domain    string
	publicIPs string
}

func newBootstrapCmd(env *Env) *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Provision every node of the rack: PXE through its BMC, install, boot from disk, bring up the cluster",
		Long: `Check the rack (as factory check), plan it, make the cluster's SSH key if
missing, make sure the boot services run (a running racker serve, or in-process),
then take every node through BMC check, PXE, install and first boot, --parallel
at a time, and run the cluster profile.

Killed at any moment, it resumes when run again: booted nodes are never
reinstalled. Progress is a live table on a terminal, log lines otherwise; the
exit status is non-zero when a node failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.prov.osGiven = cmd.Flags().Changed("os") || cmd.Flags().Changed("os-version")
			return runBootstrap(cmd, env, &f)
		},
	}
	fs := cmd.Flags()
	AddPlanFlags(fs, &f.plan)
	addProvisionFlags(fs, &f.prov)
	fs.StringVar(&f.profile, "provision", cluster.Flatcar, "cluster profile: flatcar (plain Flatcar) or lokomotive")
	fs.StringVar(&f.domain, "domain", "", "the cluster's DNS domain (default CLUSTER-NAME.local)")
	fs.StringVar(&f.publicIPs, "public-ips", "", "INI file of static public addresses per secondary MAC ([MAC] ip_addr= gateway= dns=, or DHCP)")
	return cmd
}

func runBootstrap(cmd *cobra.Command, env *Env, f *bootstrapFlags) error {
	ctx := cmd.Context()
	log := env.Logger()
	if env.Interactive() {
		askChoice(env, cmd, "provision", "Cluster profile (flatcar or lokomotive)", &f.profile)
		askChoice(env, cmd, "cluster-name", "Cluster name", &f.plan.Choices.ClusterName)
	}
	profile, err := cluster.ParseProfile(f.profile)
	if err != nil {
		return err
	}
	var publicIPs cluster.PublicIPs
	if f.publicIPs != "" {
		fh, err := os.Open(f.publicIPs)
		if err != nil {
			return fmt.Errorf("--public-ips: %w", err)
		}
		publicIPs, err = cluster.ParsePublicIPs(f.publicIPs, fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("--public-ips %w", err)
		}
	}
	inv, p, err := env.CheckRack(&f.plan, true)
	if err != nil {
		return err
	}
	pub, err := ensureSSHKey(env)
	if err != nil {
		return err
	}
	if publicIPs != nil {
		if err := cluster.WritePublicIPSnippets(env.StateDir, p, publicIPs); err != nil {
			return err
		}
	}
	if len(p.Nodes) == 0 {
		fmt.Fprintln(env.Stdout, "nothing to provision: the rack has only the management node (and excluded nodes)")
		return nil
	}
	svc, err := ensureBootServices(ctx, env, inv, p, &f.prov, false)
	if err != nil {
		return err
	}
	defer svc.stop()
	res, err := provision(svc.ctx, env, inv, p, specsFor(p, f.prov.uefiTypes, nil), &f.prov, svc, "")
	if err != nil {
		return err
	}
	if failed := res.Failed(); len(failed) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("bootstrap: %d node(s) failed: %s", len(failed), names(failed))}
	}
	err = cluster.Apply(ctx, profile, cluster.Input{Plan: p, StateDir: env.StateDir, SSHPublicKey: pub, Domain: f.domain,
		PublicIPs: publicIPs, MatchboxURL: svc.url, Stdout: env.Stdout, Logger: log})
	if errors.Is(err, cluster.ErrNotApplied) {
		fmt.Fprintf(env.Stdout, "bootstrap: %d node(s) booted; the %s cluster is not applied yet (see above)\n", len(p.Nodes), profile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap: every node is booted, but the %s profile failed: %w", profile, err)
	}
	if profile == cluster.Lokomotive {
		var macs []string
		for _, n := range p.Nodes {
			macs = append(macs, n.PrimaryMAC)
		}
		if err := orchestrator.MarkReady(env.StateDir, macs, time.Now()); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "bootstrap: done, %d node(s) booted (%s profile)\n", len(p.Nodes), profile)
	return nil
}

// askChoice asks for a flag the user did not give, on a terminal.
func askChoice(env *Env, cmd *cobra.Command, flag, question string, v *string) {
	if cmd.Flags().Changed(flag) {
		return
	}
	fmt.Fprintf(env.Stdout, "%s [%s]: ", question, *v)
	answer, _ := stdinReader(env).ReadString('\n')
	if a := strings.TrimSpace(answer); a != "" {
		*v = a
	}
}

var stdinOnce struct {
	sync.Mutex
	r  *bufio.Reader
	in any
}

// stdinReader is one buffered reader per stdin, shared by every question.
func stdinReader(env *Env) *bufio.Reader {
	stdinOnce.Lock()
	defer stdinOnce.Unlock()
	if stdinOnce.r == nil || stdinOnce.in != env.Stdin {
		stdinOnce.r, stdinOnce.in = bufio.NewReader(env.Stdin), env.Stdin
	}
	return stdinOnce.r
}

func ensureSSHKey(env *Env) (string, error) {
	path := filepath.Join(env.StateDir, SSHKeyPath+".pub")
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	}
	pub, err := GenSSHKey(env.StateDir, false)
	if err != nil {
		return "", fmt.Errorf("making the cluster's SSH key: %w", err)
	}
	env.Logger().Info("made the cluster's SSH key", "path", filepath.Join(env.StateDir, SSHKeyPath))
	return pub, nil
}

// specsFor turns plan nodes into the orchestrator's node specs; only (when
// non-nil) limits them to some primary MACs.
func specsFor(p *plan.Plan, uefiTypes []string, only map[string]bool) []orchestrator.NodeSpec {
	uefi := map[string]bool{}
	for _, t := range uefiTypes {
		uefi[strings.TrimSpace(t)] = true
	}
	var out []orchestrator.NodeSpec
	for _, n := range append(append([]plan.Node(nil), p.Nodes...), p.Excluded...) {
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

// bootServices are the boot services a run uses: found running, or started
// in-process (stop ends them). ctx ends when in-process services fail.
type bootServices struct {
	url string
	// release names the OS being served ("testos current") when Racker
	// started the services itself; a running racker serve does not say.
	release string
	client  *api.Client
	ctx     context.Context
	stop    func()
}

func ensureBootServices(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, f *provisionFlags, mustBeRunning bool) (*bootServices, error) {
	log := env.Logger()
	url := f.bootURL
	if url == "" {
		url = "http://" + netip.AddrPortFrom(p.Management.IP, uint16(f.serve.httpPort)).String()
	}
	c := api.NewClient(url)
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := c.Healthz(hctx)
	cancel()
	if err == nil {
		log.Info("using the running boot services", "url", url)
		return &bootServices{url: url, client: c, ctx: ctx, stop: func() {}}, nil
	}
	if f.bootURL != "" || mustBeRunning {
		return nil, fmt.Errorf("no boot services answer at %s (start racker serve): %w", url, err)
	}
	if inv.PXEInterface == "" {
		return nil, fmt.Errorf("no boot services answer at %s, and this machine has no interface with the management node's secondary MAC %s to run them on (--pxe-interface names it)", url, inv.Mgmt().SecondaryMAC)
	}
	prefix := netip.PrefixFrom(p.Management.IP, p.Subnet.Bits())
	if err := ensureAddress(inv.PXEInterface, prefix); err != nil {
		return nil, fmt.Errorf("starting the boot services: %w", err)
	}
	release, err := serveRelease(ctx, env, &f.serve)
	if err != nil {
		return nil, fmt.Errorf("starting the boot services: %w", err)
	}
	sctx, scancel := context.WithCancel(ctx)
	runCtx, runCancel := context.WithCancelCause(ctx)
	ready, errc := make(chan struct{}), make(chan error, 1)
	go func() {
		err := bootsvc.Serve(sctx, bootsvc.Config{Plan: p, Interface: inv.PXEInterface, StateDir: env.StateDir,
			TFTPRoot: f.serve.tftpRoot, HTTPPort: f.serve.httpPort, LeaseTime: f.serve.leaseTime, Release: release,
			Logger: log.With("part", "bootsvc"), Ready: func() { close(ready) }})
		runCancel(fmt.Errorf("the in-process boot services stopped: %v", err))
		errc <- err
	}()
	select {
	case <-ready:
	case err := <-errc:
		scancel()
		return nil, fmt.Errorf("starting the boot services: %w", err)
	}
	log.Info("boot services started in-process", "url", url, "interface", inv.PXEInterface)
	label := ""
	if release != nil {
		label = release.OS + " " + release.Version
	}
	return &bootServices{url: url, client: c, ctx: runCtx, release: label, stop: func() { scancel(); <-errc; runCancel(nil) }}, nil
}

// provision runs the orchestrator over specs with the live view, then
// prints the summary.
func provision(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, specs []orchestrator.NodeSpec,
	f *provisionFlags, svc *bootServices, stopAt orchestrator.Phase) (orchestrator.Result, error) {
	log := env.Logger()
	policy, err := policyFrom(env, f)
	if err != nil {
		return orchestrator.Result{}, err
	}
	opener, err := bmcOpener(env, inv, p, f.bmcDriver)
	if err != nil {
		return orchestrator.Result{}, err
	}
	// On a terminal the live table is the progress; info lines would
	// scroll it away. Elsewhere the log lines are the progress.
	var view *orchestrator.LiveView
	var onChange func([]orchestrator.Node)
	if env.Interactive() {
		view = orchestrator.NewLiveView(env.Stdout)
		defer view.Close()
		onChange = view.Update
		if !env.Verbose {
			log = slog.New(minLevel{log.Handler(), slog.LevelWarn})
		}
	}
	// What the nodes install: the release Racker serves itself, else --os
	// when given; a running racker serve does not say, so then a node keeps
	// its earlier record.
	osLabel := svc.release
	if osLabel == "" && f.osGiven {
		osLabel = f.serve.osName + " " + f.serve.osVersion
	}
	cfg := orchestrator.Config{StateDir: env.StateDir, Nodes: specs, Boot: orchestrator.FromAPI(svc.client), OpenBMC: opener,
		Parallel: f.parallel, Policy: policy, Timeouts: f.timeouts, OS: osLabel,
		StopAt: stopAt, Logger: log, OnChange: onChange}
	if policy.OnFailure == orchestrator.Ask || policy.AfterRetries == orchestrator.Ask {
		cfg.Ask = askFailure(env, view)
	}
	res, err := orchestrator.Run(ctx, cfg)
	if view != nil {
		view.Close()
	}
	fmt.Fprintln(env.Stdout)
	orchestrator.WriteProgress(env.Stdout, res.Nodes, time.Now())
	return res, err
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

// bmcOpener reaches a node's BMC at Racker's own DHCP lease for the BMC MAC
// (read again for every operation: the lease may arrive mid-run), else at
// the planned address. The "fake" driver (in-process fake:// BMCs named by
// primary MAC) is for tests.
func bmcOpener(env *Env, inv *inventory.Inventory, p *plan.Plan, driver string) (orchestrator.BMCOpener, error) {
	planned := map[string]netip.Addr{}
	for _, n := range p.All() {
		planned[n.PrimaryMAC] = n.BMCIP
	}
	var urlFor func(ctx context.Context, n orchestrator.NodeSpec) (string, error)
	switch driver {
	case "ipmi":
		urlFor = func(ctx context.Context, n orchestrator.NodeSpec) (string, error) {
			if a, ok, err := leases.Lookup(env.StateDir, n.BMCMAC); err == nil && ok {
				return "ipmi://" + a.String(), nil
			}
			if a := planned[n.PrimaryMAC]; a.IsValid() {
				return "ipmi://" + a.String(), nil
			}
			return "", fmt.Errorf("node %s: its BMC has no internal address", n.PrimaryMAC)
		}
	case "libvirt":
		urlFor = func(context.Context, orchestrator.NodeSpec) (string, error) { return "libvirt:///", nil }
	case "fake":
		urlFor = func(_ context.Context, n orchestrator.NodeSpec) (string, error) {
			return "fake://" + fakeBMCName(n.PrimaryMAC), nil
		}
	default:
		return nil, fmt.Errorf("--bmc-driver %q: want ipmi or libvirt", driver) // fake is for tests only
	}
	return orchestrator.ControllerOpener(urlFor, bmc.Options{Credentials: inv.Credentials, Logger: env.Logger()}), nil
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
// the live view paused.
func askFailure(env *Env, view *orchestrator.LiveView) func(context.Context, orchestrator.Node, string) orchestrator.FailureMode {
	return func(ctx context.Context, n orchestrator.Node, reason string) orchestrator.FailureMode {
		if view != nil {
			view.Pause()
			defer view.Resume()
		}
		for ctx.Err() == nil {
			fmt.Fprintf(env.Stdout, "\nnode %s (%s) failed: %s\n[r]etry, [e]xclude (and power off), [c]ancel the run? ", n.Hostname, n.PrimaryMAC, reason)
			answer, err := stdinReader(env).ReadString('\n')
			switch strings.ToLower(strings.TrimSpace(answer)) {
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
