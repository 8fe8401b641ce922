package main

// rackerServeArgs runs Racker's boot services on the bench rack, serving the
// test OS (make testos) so the HTTP figures have an OS image to fetch.
func rackerServeArgs(racker, oem, state, testosDir string, n *benchNet) []string {
	return []string{racker, "serve", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--subnet", n.subnet.String(),
		"--os", "testos", "--testos-dir", testosDir, "--tftp-root", bootFiles}
}
