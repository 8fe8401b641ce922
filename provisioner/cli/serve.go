package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/dhcp"
	"github.com/racker/racker/provisioner/bootsvc/tftp"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

func init() { register(newServeCmd) }

type serveFlags struct {
	httpPort    int
	tftpRoot    string
	leaseTime   time.Duration
	dynamicPool bool
	osName      string
	osVersion   string
	testosDir   string
	channel     string
	mirror      string // Flatcar release server (a private mirror)
	imageKey    string // the key the mirror signs its images with
}

// imageKeyUsage and mirrorUsage are shared by serve and bootstrap.
const (
	imageKeyUsage = "OpenPGP public key the OS mirror's images are signed with; Racker verifies its downloads with it and nodes' flatcar-install gets it as -k (default: Flatcar's image signing key for --os flatcar, the release folder's image-signing-key.asc for --os testos)"
	mirrorUsage   = "Flatcar release server or private mirror, e.g. https://mirror.example/flatcar/amd64-usr (default: https://CHANNEL.release.flatcar-linux.net/amd64-usr)"
)

func newServeCmd(env *Env) *cobra.Command {
	var pf PlanFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the boot services (DHCP, TFTP, HTTP) on the PXE interface until stopped",
		Long: `Run Racker's boot services on the rack's internal network: DHCP with a fixed
address for every node and BMC of the plan, TFTP for the iPXE binaries, and HTTP
for iPXE scripts, Ignition configs, OS images and the event API.

The PXE interface is brought up and given the management node's planned
address first. Stops gracefully on SIGTERM or SIGINT; SIGHUP re-reads
nodes.csv (new nodes get their addresses without a restart).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), env, &pf, &sf)
		},
	}
	AddPlanFlags(cmd.Flags(), &pf)
	f := cmd.Flags()
	f.IntVar(&sf.httpPort, "http-port", 8080, "HTTP port of the boot services")
	f.StringVar(&sf.tftpRoot, "tftp-root", tftp.DefaultRoot, "folder with the iPXE binaries (undionly.kpxe, ipxe.efi) served over TFTP")
	f.DurationVar(&sf.leaseTime, "lease-time", dhcp.DefaultLeaseTime, "DHCP lease time")
	f.BoolVar(&sf.dynamicPool, "dynamic-pool", false, "give machines that are not in nodes.csv an address from the upper half of the subnet")
	f.StringVar(&sf.osName, "os", "flatcar", "OS to install: flatcar or testos")
	f.StringVar(&sf.osVersion, "os-version", "current", "OS version: for flatcar current (the channel's newest) or a version, for testos a release folder")
	f.StringVar(&sf.channel, "flatcar-channel", "stable", "Flatcar channel: stable, beta, alpha or lts")
	f.StringVar(&sf.testosDir, "testos-dir", "", "folder with the test OS's release folders (default: INSTALL-DIR/testos)")
	f.StringVar(&sf.imageKey, "image-key", "", imageKeyUsage)
	f.StringVar(&sf.mirror, "os-mirror", "", mirrorUsage)
	return cmd
}

func runServe(ctx context.Context, env *Env, pf *PlanFlags, sf *serveFlags) error {
	log := env.Logger()
	inv, p, err := env.MakePlan(pf, true)
	if err != nil {
		return err
	}
	if inv.PXEInterface == "" {
		return fmt.Errorf("serve: no local interface has the management node's secondary MAC %s; is this the management node? (--pxe-interface names the interface)", inv.Mgmt().SecondaryMAC)
	}
	prefix := netip.PrefixFrom(p.Management.IP, p.Subnet.Bits())
	if err := ensureAddress(inv.PXEInterface, prefix); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("PXE interface ready", "interface", inv.PXEInterface, "address", prefix)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	release, err := serveRelease(ctx, env, sf)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if release == nil {
		log.Warn("no OS release to serve: nodes get iPXE scripts, but installs will fail until one is available",
			"os", sf.osName, "version", sf.osVersion)
	}
	return bootsvc.Serve(ctx, bootsvc.Config{Plan: p, Interface: inv.PXEInterface, StateDir: env.StateDir,
		TFTPRoot: sf.tftpRoot, HTTPPort: sf.httpPort, LeaseTime: sf.leaseTime, DynamicPool: sf.dynamicPool,
		Release: release, Logger: log, Reload: reloadOnHangup(ctx, env, pf)})
}

// reloadOnHangup re-reads nodes.csv and re-plans on each SIGHUP (systemctl
// reload), so nodes added to the rack get their addresses without a
// restart. A plan that fails is logged and the old one kept.
func reloadOnHangup(ctx context.Context, env *Env, pf *PlanFlags) <-chan *plan.Plan {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	plans := make(chan *plan.Plan)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			env.Logger().Info("SIGHUP: re-reading nodes.csv")
			_, p, err := env.MakePlan(pf, true)
			if err != nil {
				env.Logger().Error("plan not reloaded: keeping the current one", "err", err)
				continue
			}
			select {
			case plans <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	return plans
}

// serveRelease prepares the OS release to serve (images.Prepare: a
// verified Flatcar download or cache, or the local test OS). A Flatcar
// release that cannot be had (no network, no cache) is not fatal: DHCP
// must answer BMCs regardless, so serve goes on without an OS and says so.
func serveRelease(ctx context.Context, env *Env, sf *serveFlags) (*images.Release, error) {
	testosDir := sf.testosDir
	if testosDir == "" {
		testosDir = filepath.Join(env.InstallDir, "testos")
	}
	spec := images.Spec{OS: sf.osName, Version: sf.osVersion, Channel: sf.channel, Dir: testosDir,
		BaseURL: sf.mirror, KeyFile: sf.imageKey,
		CacheDir: filepath.Join(env.StateDir, "images"), Logger: env.Logger()}
	if sf.imageKey != "" {
		// A key that cannot be read is the operator's mistake, not a
		// release that is unavailable for now.
		if _, err := images.ReadKeyringFile(sf.imageKey); err != nil {
			return nil, fmt.Errorf("--image-key: %w", err)
		}
	}
	env.Logger().Info("preparing the OS release", "os", sf.osName, "version", sf.osVersion, "image_key", sf.imageKey, "mirror", sf.mirror)
	rel, err := images.Prepare(ctx, spec)
	if err != nil && sf.osName == "flatcar" {
		env.Logger().Warn("Flatcar release not available", "err", err)
		return nil, nil
	}
	return rel, err
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
