package simcli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/rack"
	"github.com/racker/racker/simulator/rogue"
)

func init() { register(newRogueCmd) }

// inRogue marks a racker-sim already running inside the rogue's namespace.
const inRogue = "RACKER_SIM_IN_ROGUE"

// rogueRack names the rogue's place in the rack.
func rogueRack(s *rack.State) rogue.Rack {
	return rogue.Rack{Name: s.Name, Bridge: netenv.Names{Instance: s.Name}.Bridge("int"), Dir: s.Dir}
}

// rogueFault is `racker-sim fault rogue on|off`.
func rogueFault(env *Env, s *rack.State, onOff string) error {
	switch onOff {
	case "on":
		return rogue.Attach(rogueRack(s), env.Logger())
	case "off":
		return rogue.Detach(rogueRack(s), env.Logger())
	}
	return fmt.Errorf("fault rogue %q: want on or off", onOff)
}

func newRogueCmd(env *Env) *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "rogue",
		Short: "Attack the rack from the rogue host (after racker-sim fault rogue on)",
		Long: `Each subcommand runs inside the rogue host's namespace, on the rack's internal
network, and prints what it got as JSON (requests, answers by status code, and what
must stay zero: Ignition configs, tokens, callbacks accepted, management views).`,
	}
	cmd.PersistentFlags().StringVar(&server, "server", "http://172.24.213.1:8080", "the boot services' HTTP address on the internal network")
	inside := func(run func(ctx context.Context, args []string) (any, error)) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			if os.Getenv(inRogue) != "1" {
				return env.reexecInRogue(c.Context())
			}
			ctx, cancel := context.WithTimeout(c.Context(), 30*time.Minute)
			defer cancel()
			out, err := run(ctx, args)
			if err != nil {
				return err
			}
			if out == nil {
				return nil
			}
			return json.NewEncoder(env.Stdout).Encode(out)
		}
	}
	macs := func(args []string) []string {
		var out []string
		for _, a := range args {
			out = append(out, strings.Split(a, ",")...)
		}
		return out
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "take MAC ADDRESS/PREFIX",
		Short: "Take a machine's MAC and address (the rogue's own MAC with own)",
		Args:  cobra.ExactArgs(2),
		RunE: inside(func(_ context.Context, args []string) (any, error) {
			mac := rogue.OwnMAC
			if args[0] != "own" {
				m, err := net.ParseMAC(args[0])
				if err != nil {
					return nil, fmt.Errorf("MAC %q: %w", args[0], err)
				}
				mac = m
			}
			p, err := netip.ParsePrefix(args[1])
			if err != nil {
				return nil, fmt.Errorf("address %q: want ADDRESS/PREFIX: %w", args[1], err)
			}
			return nil, rogue.Take(mac, p)
		}),
	}, &cobra.Command{
		Use:   "release",
		Short: "Give back a taken MAC and address",
		Args:  cobra.NoArgs,
		RunE:  inside(func(context.Context, []string) (any, error) { return nil, rogue.Release() }),
	}, &cobra.Command{
		Use:   "fetch-configs MAC…",
		Short: "Ask for every config of every MAC (iPXE, install and boot Ignition) and the management views",
		Args:  cobra.MinimumNArgs(1),
		RunE: inside(func(ctx context.Context, args []string) (any, error) {
			return rogue.FetchConfigs(ctx, server, macs(args)), nil
		}),
	}, &cobra.Command{
		Use:   "callbacks MAC…",
		Short: "Post every callback kind for every MAC, without a token and with a forged one",
		Args:  cobra.MinimumNArgs(1),
		RunE: inside(func(ctx context.Context, args []string) (any, error) {
			return rogue.Callbacks(ctx, server, macs(args)), nil
		}),
	}, &cobra.Command{
		Use:   "dhcp-request MAC[=IP]…",
		Short: "Send DHCPREQUESTs in other machines' names",
		Args:  cobra.MinimumNArgs(1),
		RunE: inside(func(ctx context.Context, args []string) (any, error) {
			host := strings.TrimPrefix(server, "http://")
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return nil, fmt.Errorf("--server %q: want http://ADDRESS:PORT", server)
			}
			return rogue.DHCPRequests(ip, macs(args))
		}),
	})
	var discovers, junk int
	flood := &cobra.Command{
		Use:   "flood",
		Short: "Flood DISCOVERs from random MACs and junk HTTP requests",
		Args:  cobra.NoArgs,
		RunE: inside(func(ctx context.Context, _ []string) (any, error) {
			d, err := rogue.FloodDiscovers(ctx, discovers)
			if err != nil {
				return nil, err
			}
			h := rogue.JunkHTTP(ctx, server, junk)
			return map[string]*rogue.Report{"dhcp": d, "http": h}, nil
		}),
	}
	flood.Flags().IntVar(&discovers, "discovers", 200000, "DISCOVERs to send, each from a new random MAC")
	flood.Flags().IntVar(&junk, "http", 1000, "junk HTTP requests to send")
	cmd.AddCommand(flood)
	return cmd
}

// reexecInRogue runs this racker-sim again inside the rogue's namespace.
func (env *Env) reexecInRogue(ctx context.Context) error {
	s, err := env.LoadRack()
	if err != nil {
		return err
	}
	r := rogueRack(s)
	if !r.Attached() {
		return fmt.Errorf("the rogue host is not attached: run racker-sim fault rogue on")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := netenv.Command(ctx, r.Namespace(), self, os.Args[1:]...)
	c.Env = append(os.Environ(), inRogue+"=1")
	c.Stdout, c.Stderr = env.Stdout, env.Stderr
	if err := c.Run(); err != nil {
		return &exitError{code: exitCode(err)}
	}
	return nil
}

func exitCode(err error) int {
	if ee, ok := err.(interface{ ExitCode() int }); ok && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 1
}
