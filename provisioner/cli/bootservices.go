package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// The boot services as the commands run them: racker serve, and bootstrap
// and reprovision, which use a running racker serve or run them
// in-process. Both take the same flags, declared here once.

// imageKeyUsage and mirrorUsage are are the help texts of the mirror flags.
const (
	imageKeyUsage = "OpenPGP public key the OS mirror's images are signed with; Racker verifies its downloads with it and nodes' flatcar-install gets it as -k (default: Flatcar's image signing key for --os flatcar, the release folder's image-signing-key.asc for --os testos)"
	mirrorUsage   = "Flatcar release server or private mirror, e.g. https://mirror.example/flatcar/amd64-usr (default: https://CHANNEL.release.flatcar-linux.net/amd64-usr)"
)

// bootFlags configure the boot services.
type bootFlags struct {
	httpPort  int
	tftpRoot  string
	leaseTime time.Duration
	osName    string
	osVersion string
	channel   string
	testosDir string
	mirror    string // Flatcar release server (a private mirror)
	imageKey  string // the key the mirror signs its images with
	// matchboxPort is the port of the embedded matchbox's gRPC API; 0
	// runs no matchbox.
	matchboxPort int
}

// addBootFlags declares the boot services' flags on serve, bootstrap and
// reprovision; a new one is a line here, read in openBootServices or
// serveRelease.
func addBootFlags(fs *pflag.FlagSet, f *bootFlags) {
	fs.IntVar(&f.httpPort, "http-port", bootsvc.DefaultHTTPPort, "HTTP port of the boot services")
	fs.StringVar(&f.tftpRoot, "tftp-root", "", "folder with the iPXE binaries (undionly.kpxe, ipxe.efi) served over TFTP (default: share/ipxe of Racker's own payload, INSTALL-DIR/current/share/ipxe)")
	fs.DurationVar(&f.leaseTime, "lease-time", bootsvc.DefaultLeaseTime, "DHCP lease time")
	fs.StringVar(&f.osName, "os", "flatcar", "OS to install: flatcar or testos")
	fs.StringVar(&f.osVersion, "os-version", "current", "OS version: for flatcar current (the channel's newest) or a version, for testos a release folder")
	fs.StringVar(&f.channel, "flatcar-channel", "stable", "Flatcar channel: stable, beta, alpha or lts")
	fs.StringVar(&f.testosDir, "testos-dir", "", "folder with the test OS's release folders (default: INSTALL-DIR/testos)")
	fs.StringVar(&f.imageKey, "image-key", "", imageKeyUsage)
	fs.StringVar(&f.mirror, "os-mirror", "", mirrorUsage)
	fs.IntVar(&f.matchboxPort, "matchbox-port", api.MatchboxRPCPort, "port of the embedded matchbox's gRPC API for lokoctl (mutual TLS; client bundle in STATE/"+api.MatchboxClientDir+"); 0 runs no matchbox")
}

// openBootServices readies the PXE interface (up, with the management
// node's planned address), prepares the OS release and opens the boot
// services on it as the flags say; tune, if set, changes the rest of
// their configuration. The caller serves them.
func openBootServices(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, f *bootFlags,
	tune func(*bootsvc.Config)) (*bootsvc.Services, *images.Release, error) {
	log := env.Logger()
	ipxe, err := env.ipxeDir(f.tftpRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the boot services: %w", err)
	}
	prefix := netip.PrefixFrom(p.Management.IP, p.Subnet.Bits())
	if err := ensureAddress(inv.PXEInterface, prefix); err != nil {
		return nil, nil, fmt.Errorf("starting the boot services: %w", err)
	}
	log.Info("PXE interface ready", "interface", inv.PXEInterface, "address", prefix)
	release, err := serveRelease(ctx, env, f)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the boot services: %w", err)
	}
	if release == nil {
		log.Warn("no OS release to serve: nodes get iPXE scripts, but installs will fail until one is available",
			"os", f.osName, "version", f.osVersion)
	}
	cfg := bootsvc.Config{Plan: p, Interface: inv.PXEInterface, StateDir: env.StateDir, TFTPRoot: ipxe,
		HTTPPort: f.httpPort, LeaseTime: f.leaseTime, Release: release, Logger: log,
		Matchbox: f.matchboxPort != 0, MatchboxPort: f.matchboxPort}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := bootsvc.Open(ctx, cfg)
	return svc, release, err
}

// serveRelease prepares the OS release to serve (images.Prepare: a
// verified Flatcar download or cache, or the local test OS). A Flatcar
// release that cannot be had (no network, no cache) is not fatal: DHCP
// must answer BMCs regardless, so serve goes on without an OS and says so.
func serveRelease(ctx context.Context, env *Env, f *bootFlags) (*images.Release, error) {
	testosDir := f.testosDir
	if testosDir == "" {
		testosDir = filepath.Join(env.InstallDir, "testos")
	}
	spec := images.Spec{OS: f.osName, Version: f.osVersion, Channel: f.channel, Dir: testosDir,
		BaseURL: f.mirror, KeyFile: f.imageKey,
		CacheDir: filepath.Join(env.StateDir, "images"), Logger: env.Logger()}
	if f.imageKey != "" {
		// A key that cannot be read is the operator's mistake, not a
		// release that is unavailable for now.
		if _, err := images.ReadKeyringFile(f.imageKey); err != nil {
			return nil, fmt.Errorf("--image-key: %w", err)
		}
	}
	env.Logger().Info("preparing the OS release", "os", f.osName, "version", f.osVersion, "image_key", f.imageKey, "mirror", f.mirror)
	rel, err := images.Prepare(ctx, spec)
	if err != nil && f.osName == "flatcar" {
		env.Logger().Warn("Flatcar release not available", "err", err)
		return nil, nil
	}
	return rel, err
}

// bootServices are the boot services a run uses: found running, or started
// in-process (stop ends them). ctx ends when in-process services fail.
type bootServices struct {
	url string // the management views (loopback)
	// nodeURL is how nodes reach the services: http://MANAGEMENT-ADDRESS:PORT.
	nodeURL string
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
		url = managementURL(f.boot.httpPort)
	}
	nodeURL := "http://" + netip.AddrPortFrom(p.Management.IP, uint16(f.boot.httpPort)).String()
	c := api.NewClient(url)
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := c.Healthz(hctx)
	cancel()
	if err == nil {
		log.Info("using the running boot services", "url", url)
		// Rows added to nodes.csv since racker serve last read it: make
		// it read them now, or the new nodes get no address.
		env.reloadRunningServices(ctx, url, p.Management.IP)
		return &bootServices{url: url, nodeURL: nodeURL, client: c, ctx: ctx, stop: func() {}}, nil
	}
	if f.bootURL != "" || mustBeRunning {
		return nil, fmt.Errorf("no boot services answer at %s (start racker serve): %w", url, err)
	}
	if inv.PXEInterface == "" {
		return nil, fmt.Errorf("no boot services answer at %s, and this machine has no interface with the management node's secondary MAC %s to run them on (--pxe-interface names it)", url, inv.Mgmt().SecondaryMAC)
	}
	services, release, err := openBootServices(ctx, env, inv, p, &f.boot, func(c *bootsvc.Config) { c.Logger = log.With("part", "bootsvc") })
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithCancel(ctx)
	runCtx, runCancel := context.WithCancelCause(ctx)
	errc := make(chan error, 1)
	go func() {
		err := services.Serve(sctx)
		runCancel(fmt.Errorf("the in-process boot services stopped: %v", err))
		errc <- err
	}()
	log.Info("boot services started in-process", "url", url, "interface", inv.PXEInterface)
	label := ""
	if release != nil {
		label = release.OS + " " + release.Version
	}
	return &bootServices{url: url, nodeURL: nodeURL, client: c, ctx: runCtx, release: label, stop: func() { scancel(); <-errc; runCancel(nil) }}, nil
}

// managementURL is where the boot services serve the management views
// (events, nodes, reinstall, netboot) on the management node: loopback.
// The nodes' listener on the internal address is bound to the PXE
// interface, which a connection from the management node itself never
// arrives on (docs/security.md).
func managementURL(port int) string {
	return "http://" + netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)).String()
}

// ensureAddress brings the PXE interface up and makes sure it holds the
// management node's planned address with the subnet's prefix length, so
// DHCP replies come from the address nodes are told to fetch from.
func ensureAddress(ifname string, prefix netip.Prefix) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("finding the PXE interface %s: %w", ifname, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing the PXE interface %s up: %w", ifname, err)
		}
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == prefix.Addr() {
			if ones, _ := a.Mask.Size(); ones == prefix.Bits() {
				return nil
			}
		}
	}
	ipnet := &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), 32)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipnet}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("adding %s to the PXE interface %s: %w", prefix, ifname, err)
	}
	return nil
}
