// Command racker provisions a server rack from its management node.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/racker/racker/provisioner/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
