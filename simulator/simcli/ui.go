package simcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/rack"
)

func init() { register(newUICmd) }

// rackViewAddr is where racker serve's rack view listens in the management
// node by default (racker serve --ui): its loopback.
const rackViewAddr = "127.0.0.1:8088"

func newUICmd(env *Env) *cobra.Command {
	var listen, to string
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Forward a port of this machine to the rack view in the management node, so a browser here opens it",
		Long: `racker serve's rack view listens on the management node's loopback (as on a
real one, where an SSH tunnel reaches it). This forwards --listen on this
machine to --to inside the management node's network namespace, until
interrupted, and prints the URL to open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			f, err := newForwarder(netenv.NamespacePath(s.MgmtNamespace()), to, env.Logger())
			if err != nil {
				return err
			}
			defer f.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("while listening on %s for the rack view: %w", listen, err)
			}
			fmt.Fprintf(env.Stdout, "rack view of rack %s: http://%s/ (forwarded to %s in its management node; Ctrl-C stops)\n", s.Name, ln.Addr(), to)
			return f.Serve(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", rackViewAddr, "address on this machine to open in a browser")
	cmd.Flags().StringVar(&to, "to", rackViewAddr, "the rack view's address inside the management node (racker serve --ui)")
	return cmd
}

// uiHint is what `up` prints about the rack view.
func uiHint(s *rack.State) string {
	flag := ""
	if s.Name != rack.DefaultName {
		flag = " --name " + s.Name
	}
	return fmt.Sprintf("Rack view: http://%s/ in the management node; racker-sim%s ui forwards it to http://%s/ here\n", rackViewAddr, flag, rackViewAddr)
}

// forwarder relays TCP connections from this machine into a network
// namespace: each one is dialled from a thread inside the namespace (a
// socket stays in the namespace it was made in), then copied both ways.
type forwarder struct {
	ns  netns.NsHandle
	to  string
	log *slog.Logger
	wg  sync.WaitGroup
}

// newForwarder opens the namespace at nsPath (a bind mount, as `ip netns`
// makes them) once, so a connection never depends on a name.
func newForwarder(nsPath, to string, log *slog.Logger) (*forwarder, error) {
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("while opening the management node's network namespace %s (is the rack up?): %w", nsPath, err)
	}
	return &forwarder{ns: h, to: to, log: log}, nil
}

// Close releases the namespace once every connection has ended.
func (f *forwarder) Close() {
	f.wg.Wait()
	f.ns.Close()
}

// Serve accepts on ln until ctx ends.
func (f *forwarder) Serve(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("while accepting a browser's connection: %w", err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.relay(ctx, c)
		}()
	}
}

func (f *forwarder) relay(ctx context.Context, c net.Conn) {
	defer c.Close()
	up, err := f.dial(ctx)
	if err != nil {
		f.log.Warn("rack view not reachable in the management node", "to", f.to, "err", err)
		badGateway(c, f.to, err)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
}

// dial connects to f.to from inside the namespace, on a thread of its own
// that goes back to the original namespace before it is reused (or dies
// with its goroutine when it cannot).
func (f *forwarder) dial(ctx context.Context) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	out := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			out <- res{err: fmt.Errorf("while reading this thread's network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(f.ns); err != nil {
			runtime.UnlockOSThread()
			out <- res{err: fmt.Errorf("while entering the management node's network namespace: %w", err)}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", f.to)
		if serr := netns.Set(orig); serr != nil {
			out <- res{c, errors.Join(err, serr)}
			return // the thread stays locked and ends with the goroutine
		}
		runtime.UnlockOSThread()
		out <- res{c, err}
	}()
	r := <-out
	if r.err != nil && r.c != nil {
		r.c.Close()
		r.c = nil
	}
	return r.c, r.err
}

// badGateway answers a browser whose request cannot reach the view with a
// page that says why, rather than a dropped connection.
func badGateway(c net.Conn, to string, err error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	for { // read the request's head, so closing does not reset it
		line, rerr := br.ReadString('\n')
		if rerr != nil || line == "\r\n" || line == "\n" {
			break
		}
	}
	body := fmt.Sprintf("racker-sim ui: nothing answers at %s in the management node (%v).\nIs racker serve running there, with its rack view (--ui)? racker-sim status shows its daemons.\n", to, err)
	fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}
