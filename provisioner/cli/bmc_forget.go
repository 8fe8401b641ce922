package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
)

// newBMCForgetCmd is racker bmc forget: the way out of "… is pinned" after
// a BMC was replaced or renewed its key, and of a protocol auto or the
// IPMI downgrade guard remembered for a BMC that changed.
func newBMCForgetCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var out output
	cmd := &cobra.Command{
		Use:   "forget NODE|--bmc URL",
		Short: "Forget a BMC's pinned TLS key and remembered protocol, so the next contact learns them anew",
		Long: `Racker remembers three things per BMC in the state folder: the TLS key a
Redfish BMC showed first (bmc-pins.json; another key later is refused), the
IPMI protocol it spoke (bmc-protocols.json; less later is refused as a
downgrade), and what --bmc-driver auto chose for it. After a BMC board was
replaced, its certificate renewed or its protocols switched, forget them: the
next command pins and chooses again, trusting what answers first, so do it
when you know that the BMC at that address is yours. racker replace and racker
retire forget the old machine's BMC themselves.

A NODE's BMC is known by its planned and its current address (the boot
services' lease) and its MAC; --bmc URL forgets what is kept for that host.
Nothing is contacted.`,
		Example: `  racker bmc forget racker-worker-1
  racker bmc forget --bmc redfish://172.24.213.7 -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			label, hosts, mac, err := env.bmcIdentity(cmd.Context(), &bf, args)
			if err != nil {
				return err
			}
			gone, err := bmc.Forget(env.StateDir, hosts, mac)
			if err != nil {
				return fmt.Errorf("forgetting what is kept of %s's BMC: %w", label, err)
			}
			if gone == nil {
				gone = []bmc.Remembered{}
			}
			return out.print(env.Stdout, view{value: gone,
				names: func() []string {
					var names []string
					for _, r := range gone {
						names = append(names, r.Key)
					}
					return names
				},
				table: func(w io.Writer, _ bool) error {
					if len(gone) == 0 {
						_, err := fmt.Fprintf(w, "nothing was kept of %s's BMC\n", label)
						return err
					}
					for _, r := range gone {
						fmt.Fprintf(w, "forgot %s\n", r)
					}
					return nil
				}})
		},
	}
	addOutputFlag(cmd, &out)
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}

// bmcIdentity is how the state folder may know a node's BMC (or --bmc's):
// its addresses and MAC, and a name for it in messages.
func (env *Env) bmcIdentity(ctx context.Context, bf *bmcFlags, args []string) (label string, hosts []string, mac string, err error) {
	node, rest, err := bf.nodeArgs(args)
	if err != nil {
		return "", nil, "", err
	}
	if len(rest) != 0 {
		return "", nil, "", usageErrorf("unexpected arguments %q", rest)
	}
	if bf.url != "" {
		u, err := url.Parse(bf.url)
		if err != nil || u.Hostname() == "" {
			return "", nil, "", usageErrorf("--bmc %q: want ipmi://HOST[:PORT] or redfish://HOST[:PORT]", bf.url)
		}
		return u.Redacted(), []string{u.Hostname()}, "", nil
	}
	_, p, err := env.MakePlan(&bf.plan, false)
	if err != nil {
		return "", nil, "", err
	}
	n, ok := p.Find(node)
	if !ok {
		return "", nil, "", fmt.Errorf("node %q: not in the rack (give a primary MAC, BMC MAC, hostname or plan index; see racker plan)", node)
	}
	label = n.PrimaryMAC
	if n.Hostname != "" {
		label = n.Hostname
	}
	if n.BMCIP.IsValid() {
		hosts = append(hosts, n.BMCIP.String())
		boot := bootClient(bf.bootURL, p.Management.IP, bootsvc.DefaultHTTPPort)
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if cur := bmcAddress(actx, env.Logger(), boot, n.PrimaryMAC, n.BMCIP); cur != n.BMCIP {
			hosts = append(hosts, cur.String())
		}
		cancel()
	}
	return label, hosts, n.BMCMAC, nil
}
