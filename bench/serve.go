package main

import "path/filepath"

// rackerServeArgs runs Racker's boot services on the bench rack.
func rackerServeArgs(racker, oem, state string, n *benchNet) []string {
	return []string{racker, "serve", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--subnet", n.subnet.String(), "--install-dir", filepath.Dir(state)}
}
