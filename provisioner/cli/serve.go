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
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/release"
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
}

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
	f.StringVar(&sf.tftpRoot, "tftp-root", "", "folder with the iPXE binaries (undionly.kpxe, ipxe.efi) served over TFTP (default: share/ipxe of Racker's own payload, INSTALL-DIR/current/share/ipxe)")
	f.DurationVar(&sf.leaseTime, "lease-time", dhcp.DefaultLeaseTime, "DHCP lease time")
	f.BoolVar(&sf.dynamicPool, "dynamic-pool", false, "give machines that are not in nodes.csv an address from the upper half of the subnet")
	f.StringVar(&sf.osName, "os", "flatcar", "OS to install: flatcar or testos")
	f.StringVar(&sf.osVersion, "os-version", "current", "OS version: for flatcar current (the channel's newest) or a version, for testos a release folder")
	f.StringVar(&sf.channel, "flatcar-channel", "stable", "Flatcar channel: stable, beta, alpha or lts")
	f.StringVar(&sf.testosDir, "testos-dir", "", "folder with the test OS's release folders (default: INSTALL-DIR/testos)")
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
	ipxe, err := env.ipxeDir(sf.tftpRoot)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
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
		TFTPRoot: ipxe, HTTPPort: sf.httpPort, LeaseTime: sf.leaseTime, DynamicPool: sf.dynamicPool,
		Release: release, Logger: log, Reload: reloadOnHangup(ctx, env, pf)})
}

// ipxeDir is the folder of iPXE binaries the boot services serve over TFTP
// and HTTP: --tftp-root when given, else share/ipxe of Racker's own
// payload, the one the running racker belongs to (release.PayloadDir) or
// else the installed current version. Racker never assumes the host has
// iPXE (Debian's /usr/lib/ipxe): a Flatcar management node has none.
func (e *Env) ipxeDir(flag string) (string, error) {
	dir, from := flag, "--tftp-root"
	if dir == "" {
		if p, ok := release.PayloadDir(); ok {
			dir, from = filepath.Join(p, "share", "ipxe"), "the running racker's payload"
		} else {
			dir, from = filepath.Join(e.InstallDir, "current", "share", "ipxe"), "the installed release"
		}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("no iPXE binaries: %s (from %s) is not a folder; install Racker with its installer image (its payload carries share/ipxe), or name a folder holding undionly.kpxe and ipxe.efi with --tftp-root", dir, from)
	}
	for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			e.Logger().Warn("an iPXE binary is missing: firmware that asks for it cannot netboot", "file", filepath.Join(dir, f))
		}
	}
	return dir, nil
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
		CacheDir: filepath.Join(env.StateDir, "images"), Logger: env.Logger()}
	env.Logger().Info("preparing the OS release", "os", sf.osName, "version", sf.osVersion)
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
