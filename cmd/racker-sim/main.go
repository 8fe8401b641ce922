// Command racker-sim builds a simulated rack (bridges, management node,
// libvirt VMs, virtual BMCs) on one Linux machine.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "racker-sim: the simulator is not built yet")
	os.Exit(2)
}
