// Package simcli is the racker-sim command line: one cobra command per file,
// each a thin layer over simulator/rack. cmd/racker-sim only calls Main.
package simcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/rack"
)

// Env is what every command shares: the global flags and the standard
// streams, injected so tests run commands in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Name, Dir      string
	Verbose        bool
	log            *slog.Logger
}

// Logger logs to stderr (debug with -v).
func (e *Env) Logger() *slog.Logger {
	if e.log == nil {
		level := slog.LevelInfo
		if e.Verbose {
			level = slog.LevelDebug
		}
		e.log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return e.log
}

// RackDir is the state folder of the rack named by --name/--dir.
func (e *Env) RackDir() string {
	if e.Dir != "" {
		return e.Dir
	}
	return rack.DefaultDir(e.Name)
}

// LoadRack reads the rack's state.
func (e *Env) LoadRack() (*rack.State, error) { return rack.Load(e.RackDir()) }

// NewRoot builds the racker-sim command tree around env.
func NewRoot(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "racker-sim",
		Short:         "Build a simulated rack (bridges, management node, libvirt VMs, virtual BMCs) on this machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&env.Name, "name", rack.DefaultName, "instance name: prefixes bridges, namespaces and domains, so racks coexist")
	pf.StringVar(&env.Dir, "dir", "", "state folder of the rack (default /var/lib/racker-sim/NAME)")
	pf.BoolVarP(&env.Verbose, "verbose", "v", false, "debug logging")
	for _, add := range commands {
		root.AddCommand(add(env))
	}
	return root
}

var commands []func(*Env) *cobra.Command

func register(c ...func(*Env) *cobra.Command) { commands = append(commands, c...) }

// Main runs racker-sim with args and returns the exit code; errors are
// printed once, here.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	root := NewRoot(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "racker-sim:", err)
	return 1
}

// exitError ends racker-sim with a code and nothing more to print.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// besideExecutable names a file next to the running racker-sim (bin/racker
// next to bin/racker-sim after `make build`).
func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(exe), name)
}
