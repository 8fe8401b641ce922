package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/provisioner/ui"
)

// The rack view (provisioner/ui): racker serve runs it beside the boot
// services, on a listener of its own; racker ui token prints what a
// browser needs to open it anywhere but loopback.

func newUICmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "The rack view in the browser (racker serve --ui)",
		Example: `  # On a laptop: tunnel to the management node's view, then open http://127.0.0.1:8088/
  ssh -L 8088:127.0.0.1:8088 core@MANAGEMENT-NODE
  # The token a view listening elsewhere (--ui ADDRESS:PORT) asks for:
  racker ui token`,
	}
	var renew bool
	token := &cobra.Command{
		Use: "token",
		Example: `  racker ui token
  # Revoke it: pages opened with the old one must be opened again
  racker ui token --new`,
		Short: "Print the rack view's token (made on first use, kept in the state folder, mode 0600)",
		Long: `racker serve's rack view listens on loopback by default (--ui ` + ui.DefaultAddr + `),
reached through an SSH tunnel. Anywhere else (--ui ADDRESS:PORT) every request
must carry this token: open http://ADDRESS:PORT/?token=TOKEN once, and the
browser keeps it in a cookie. --new replaces it at once: pages opened with the
old one must be opened again with the new one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			get := ui.EnsureToken
			if renew {
				get = ui.NewToken
			}
			tok, err := get(env.StateDir)
			if err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, tok)
			return nil
		},
	}
	token.Flags().BoolVar(&renew, "new", false, "replace the token with a new one")
	cmd.AddCommand(token)
	return cmd
}

// addUIFlag declares racker serve's --ui.
func addUIFlag(cmd *cobra.Command, addr *string) {
	cmd.Flags().StringVar(addr, "ui", ui.DefaultAddr, `address of the rack view in the browser: loopback (an SSH tunnel reaches it), or another address with the token of racker ui token; never the PXE network; "off" for none`)
}

// rackView is the running view; withPlan hands it a reloaded plan.
type rackView struct {
	src    *ui.Local
	cancel context.CancelFunc
	done   chan struct{}
}

// withPlan wraps the boot services' reload so the view follows the plan.
func (v *rackView) withPlan(reload func(*plan.Plan) error) func(*plan.Plan) error {
	if v.src == nil {
		return reload
	}
	return v.src.WithPlan(reload)
}

// stop ends the view and waits for it.
func (v *rackView) stop() {
	if v.cancel != nil {
		v.cancel()
		<-v.done
	}
}

// startRackView checks --ui, opens its listener and serves the view until
// ctx ends or stop. An address on the PXE network (the plan's subnet, any
// prefix on the PXE interface) or one that is not an address is an error;
// a listener that cannot be opened (the port is taken) is logged and the
// boot services go on without the view: DHCP must answer regardless.
func startRackView(ctx context.Context, env *Env, inv *inventory.Inventory, p *plan.Plan, httpPort int, addr string) (*rackView, error) {
	if addr == "" || addr == "off" {
		return &rackView{}, nil
	}
	log := env.Logger().With("part", "ui")
	pxe := append([]netip.Prefix{p.Subnet}, interfacePrefixes(inv.PXEInterface)...)
	l, err := ui.CheckAddr(addr, pxe, inv.PXEInterface)
	if err != nil {
		return nil, err
	}
	cfg := ui.Config{Logger: log}
	if l.NeedsToken {
		if _, err := ui.EnsureToken(env.StateDir); err != nil {
			return nil, fmt.Errorf("--ui %s: %w", addr, err)
		}
		cfg.TokenDir = env.StateDir
	}
	boot := api.NewClient(managementURL(httpPort))
	src := ui.NewLocal(env.StateDir, p, boot, log)
	cfg.Source = src
	view, err := ui.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", l.Addr.String())
	if err != nil {
		log.Error("the rack view is not available; the boot services run without it", "err", err)
		return &rackView{}, nil
	}
	how := "loopback: no token"
	if l.NeedsToken {
		how = "open it once with ?token= and the token of racker ui token"
	}
	log.Info("rack view", "url", "http://"+ln.Addr().String()+"/", "access", how)
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := view.Serve(vctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("rack view stopped", "err", err)
		}
	}()
	return &rackView{src: src, cancel: cancel, done: done}, nil
}

// interfacePrefixes lists the IPv4 and IPv6 prefixes on an interface; none
// when it cannot be read (the plan's subnet still counts).
func interfacePrefixes(ifname string) []netip.Prefix {
	if ifname == "" {
		return nil
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones).Masked())
	}
	return out
}
