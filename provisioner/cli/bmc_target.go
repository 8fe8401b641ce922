package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
)

// bmcFlags say how the node commands (power, bootdev, bmc diag, console)
// reach a BMC: by node name through the plan (and the boot services' view
// of its BMC), or directly with --bmc.
type bmcFlags struct {
	url      string
	driver   string
	insecure bool
	ipmiV15  bool
	bootURL  string
	plan     PlanFlags
}

func addBMCFlags(fs *pflag.FlagSet, bf *bmcFlags) {
	fs.StringVar(&bf.url, "bmc", "", "address a BMC directly (ipmi://HOST[:PORT], redfish://HOST[:PORT], libvirt:///DOMAIN) instead of a NODE")
	fs.StringVar(&bf.driver, "bmc-driver", "", bmcDriverHelp)
	fs.BoolVar(&bf.insecure, "insecure", false, insecureHelp)
	fs.BoolVar(&bf.ipmiV15, "ipmi-allow-v15", false, ipmiV15Help)
	fs.StringVar(&bf.bootURL, "boot-services", "", "URL of the boot services, asked for the BMC's current address (default http://127.0.0.1:8080)")
	AddPlanFlags(fs, &bf.plan)
}

// nodeArgs splits args into the NODE (absent with --bmc) and the rest.
func (bf *bmcFlags) nodeArgs(args []string) (node string, rest []string, err error) {
	if bf.url != "" {
		return "", args, nil
	}
	if len(args) == 0 {
		return "", nil, usageErrorf("name a NODE (primary MAC, BMC MAC, hostname or plan index) or give --bmc URL")
	}
	return args[0], args[1:], nil
}

// openTarget opens the BMC named by a command's only argument (or --bmc).
func (env *Env) openTarget(ctx context.Context, bf *bmcFlags, args []string) (bmc.Controller, string, error) {
	node, rest, err := bf.nodeArgs(args)
	if err != nil {
		return nil, "", err
	}
	if len(rest) != 0 {
		return nil, "", usageErrorf("unexpected arguments %q", rest)
	}
	return env.openBMC(ctx, bf, node)
}

// openBMC resolves node (or --bmc) to a controller. The plan is a dry run:
// these commands never write state. A node's BMC address is the one the
// boot services report (its DHCP lease), else its planned address; never
// an ARP scan.
func (env *Env) openBMC(ctx context.Context, bf *bmcFlags, node string) (bmc.Controller, string, error) {
	t, err := env.resolveBMC(ctx, bf, node)
	if err != nil {
		return nil, "", err
	}
	c, err := bmc.Open(ctx, t.url, t.opts)
	return c, t.label, err
}

// bmcTarget is where a node command goes: the driver URL, the options
// (credentials included) and how to name the node in messages.
type bmcTarget struct {
	url   string
	opts  bmc.Options
	label string
}

func (env *Env) resolveBMC(ctx context.Context, bf *bmcFlags, node string) (bmcTarget, error) {
	opts := env.bmcOptionsFor(env.bmcOptions(bmc.Options{Logger: env.Logger()}, bf.ipmiV15), bf.insecure)
	if bf.url != "" {
		creds, err := env.bmcCredentials()
		if err != nil {
			return bmcTarget{}, err
		}
		opts.Credentials = creds
		u, err := url.Parse(bf.url)
		if err != nil {
			return bmcTarget{}, fmt.Errorf("--bmc %q: %w", bf.url, err)
		}
		return bmcTarget{url: bf.url, opts: opts, label: u.Redacted()}, nil
	}
	reach, err := env.newBMCReach(bf.driver, opts)
	if err != nil {
		return bmcTarget{}, err
	}
	inv, p, err := env.MakePlan(&bf.plan, false)
	if err != nil {
		return bmcTarget{}, err
	}
	n, ok := p.Find(node)
	if !ok {
		return bmcTarget{}, fmt.Errorf("node %q: not in the rack (give a primary MAC, BMC MAC, hostname or plan index; see racker plan)", node)
	}
	opts.Credentials = inv.Credentials
	opts.Node = n.PrimaryMAC
	opts.PrimaryMAC = n.PrimaryMAC
	label := n.PrimaryMAC
	if n.Hostname != "" {
		label += " (" + n.Hostname + ")"
	}
	reach.opts = opts
	var addr netip.Addr
	if proto := reach.protocol(n.Type); proto != "libvirt" && n.BMCIP.IsValid() {
		boot := bootClient(bf.bootURL, p.Management.IP, bootsvc.DefaultHTTPPort)
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addr = bmcAddress(actx, env.Logger(), boot, n.PrimaryMAC, n.BMCIP)
		cancel()
	}
	u, err := reach.url(ctx, n.PrimaryMAC, n.PrimaryMAC, n.BMCMAC, n.Type, addr)
	if err != nil {
		return bmcTarget{}, err
	}
	return bmcTarget{url: u, opts: opts, label: label}, nil
}

// bootClient is the client of the boot services at url, by default their
// management views on loopback.
func bootClient(url string, mgmt netip.Addr, port int) *api.Client {
	if url == "" {
		url = managementURL(port)
	}
	return api.NewClient(url)
}

// bmcAddress is where a node's BMC answers: the boot services' view of the
// node (its BMC's current DHCP lease, else its planned address); when they
// do not answer, or do not serve the node (an excluded one), the planned
// address, which is what the BMC's DHCP reservation gives it anyway.
func bmcAddress(ctx context.Context, log *slog.Logger, boot *api.Client, primaryMAC string, planned netip.Addr) netip.Addr {
	rn, err := boot.Node(ctx, primaryMAC)
	if err != nil || !rn.BMCIP.IsValid() {
		log.Debug("no BMC address from the boot services; using the planned one", "node", primaryMAC, "address", planned, "err", err)
		return planned
	}
	return rn.BMCIP
}

// bmcCredentials reads ipmi_user and ipmi_password from the OEM folder for
// --bmc, where nodes.csv may be absent or broken. Only a trailing newline is
// trimmed, as inventory does; values are never echoed.
func (env *Env) bmcCredentials() (inventory.Credentials, error) {
	if inv, err := env.LoadInventory(); err == nil {
		return inv.Credentials, nil
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(env.OEMDir, name))
		if err != nil {
			return "", fmt.Errorf("BMC credentials: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("BMC credentials: %s is empty", filepath.Join(env.OEMDir, name))
		}
		return s, nil
	}
	user, err := read(inventory.UserFile)
	if err != nil {
		return inventory.Credentials{}, err
	}
	pass, err := read(inventory.PasswordFile)
	if err != nil {
		return inventory.Credentials{}, err
	}
	return inventory.Credentials{User: user, Password: pass}, nil
}
