// Command racker-sim builds a simulated rack (bridges, management node,
// libvirt VMs, virtual BMCs) on one Linux machine. All of it is in
// simulator/simcli; this only wires the process in.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/racker/racker/simulator/simcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := simcli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
