package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/inventory"
)

// OpenIPMI's ipmi_sim is a BMC that is neither Racker's nor go-ipmi's: a
// separate C program from another project, the closest thing to a real
// BMC's IPMI stack the bench can run. Its chassis is a shell script that
// keeps the power state in a file.

const ipmiSimChassis = `#!/bin/sh
# ipmi_sim chassis_control: $1 = MC address, then "get NAME..." or "set NAME VALUE...".
dir=$(dirname "$0")
op=$2; shift 2
case $op in
get)
	for name in "$@"; do
		case $name in
		power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 1)" ;;
		boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		case $1 in
		power) echo "$2" > "$dir/power" ;;
		boot) echo "$2" > "$dir/boot" ;;
		esac
		shift 2
	done ;;
esac
`

// startIPMISim runs ipmi_sim on a loopback port with user/pass (admin, MD5
// for IPMI 1.5, RMCP+ as it ships) until stop; ready once it answers.
func startIPMISim(work, user, pass string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		return "", nil, fmt.Errorf("ipmi_sim: %w (make deps installs openipmi)", err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return "", nil, err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := filepath.Join(work, "ipmi_sim")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return "", nil, err
	}
	files := map[string]string{
		"chassis_control": ipmiSimChassis,
		"lan.conf": fmt.Sprintf(`name "racker-bench"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 md5
`, port, filepath.Join(dir, "chassis_control"), user, pass),
		"bmc.emu": "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
	}
	for name, content := range files {
		mode := os.FileMode(0o600)
		if name == "chassis_control" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return "", nil, err
		}
	}
	// ipmi_sim logs to syslog only; without -n and with stdin on a FIFO
	// opened read-write (never EOF) its messages come to its stdout.
	fifo := filepath.Join(dir, "stdin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return "", nil, err
	}
	stdin, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		stdin.Close()
		return "", nil, err
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "state"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = stdin, logf, logf, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		stdin.Close()
		logf.Close()
		return "", nil, fmt.Errorf("starting ipmi_sim: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Kill()
		<-exited
		stdin.Close()
		logf.Close()
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := bmc.Options{Credentials: inventory.Credentials{User: user, Password: pass}, Tries: 1, TryTimeout: time.Second, SessionIdle: -1}
	for {
		c, err := bmc.Open(ctx, "ipmi://"+addr, opts)
		if err == nil {
			_, err = c.PowerState(ctx)
			c.Close()
		}
		if err == nil {
			return addr, stop, nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			return "", nil, fmt.Errorf("ipmi_sim exited: %s", b)
		case <-ctx.Done():
			stop()
			b, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			return "", nil, fmt.Errorf("ipmi_sim never answered (%v): %s", err, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
