package mgmtnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// Path is the PATH of a login on the node: Flatcar's, which ends with
// /opt/bin, where Racker's installer links its executables.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin"

// nsenter is the host's util-linux nsenter: a Go process cannot join
// another mount namespace itself (the runtime is multi-threaded).
const nsenter = "nsenter"

// enterArgs is the nsenter command line that runs argv inside the node
// whose PID 1 is pid: every namespace of the node, its root and working
// folder. The node's setpriv gives the command a parent-death signal, so
// killing the session (nsenter) ends the command too, as a dropped SSH
// connection ends a login's commands.
func enterArgs(pid int, argv []string) []string {
	args := []string{nsenter, "--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid",
		"--root", "--wd", "--", "/usr/bin/setpriv", "--pdeathsig", "TERM", "--"}
	return append(args, argv...)
}

// LoginEnv is the environment of a command run in the node: a login's
// PATH and HOME, and the caller's terminal type.
func LoginEnv() []string {
	env := []string{"PATH=" + Path, "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash", "LANG=C.UTF-8"}
	if t := os.Getenv("TERM"); t != "" {
		env = append(env, "TERM="+t)
	}
	return env
}

// Exec replaces the calling process with argv running inside the node
// (racker-sim exec). It returns only on failure.
func Exec(pid int, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command to run in the management node")
	}
	bin, err := exec.LookPath(nsenter)
	if err != nil {
		return fmt.Errorf("while looking for nsenter (util-linux) to enter the management node: %w", err)
	}
	if err := syscall.Exec(bin, enterArgs(pid, argv), LoginEnv()); err != nil {
		return fmt.Errorf("while entering the management node: %w", err)
	}
	return nil
}

// Command returns a command that runs argv inside the node.
func Command(ctx context.Context, pid int, argv ...string) *exec.Cmd {
	args := enterArgs(pid, argv)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = LoginEnv()
	return cmd
}
