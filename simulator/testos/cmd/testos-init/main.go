// Command testos-init is the test OS's multi-call binary: /init (PID 1),
// flatcar-install, wipefs, curl and systemctl, chosen by the name it runs
// as. scripts/build-testos.sh builds it static (CGO_ENABLED=0) into the
// initramfs.
package main

import (
	"os"

	"github.com/racker/racker/simulator/testos"
)

func main() { os.Exit(testos.Main(os.Args)) }
