// Command unitd is the simulated management node's multi-call service
// manager binary, chosen by the name it runs as: init (PID 1), systemctl
// and journalctl. scripts/build-mgmtos.sh builds it static into the
// node's /usr.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/racker/racker/simulator/unitd"
)

func main() { os.Exit(run(os.Args)) }

func run(args []string) int {
	name, rest := filepath.Base(args[0]), args[1:]
	if name == "unitd" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	switch name {
	case "init", "unitd":
		if os.Getpid() != 1 {
			fmt.Fprintln(os.Stderr, "unitd: init must run as PID 1 (the management node's)")
			return 1
		}
		if err := unitd.RunInit(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "unitd:", err)
			return 1
		}
		return 0
	case "systemctl":
		return unitd.CallControl(unitd.ControlSocket, rest, os.Stdout, os.Stderr)
	case "journalctl":
		stop := make(chan struct{})
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() { <-sig; close(stop) }()
		return unitd.Journalctl("/var/log/units", rest, os.Stdout, os.Stderr, stop)
	}
	fmt.Fprintf(os.Stderr, "unitd: unknown applet %q (init, systemctl, journalctl)\n", name)
	return 2
}
