// Package cli is the racker command line: one cobra command per file, each a
// thin layer over a provisioner package, built into one tree by NewRoot.
// cmd/racker only calls Main.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/racker/racker/provisioner/bmc"
)

// Env is what every command shares: the global flags and the process's
// standard streams, injected so tests can run commands in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	OEMDir       string
	StateDir     string
	InstallDir   string
	LogFormat    string
	Verbose      bool
	MgmtMAC      string
	PXEInterface string

	// IsTerminal says whether stdin and stdout are a terminal (questions,
	// live views); tests set it.
	IsTerminal func() bool
	// TermSize is the terminal's size in columns and rows (nil: asked of
	// Stdout's terminal; 0, 0 off a terminal); tests set it.
	TermSize func() (width, height int)
	// Getenv reads the RACKER_* variables of the global flags (nil: the
	// process environment); tests set it.
	Getenv func(string) string

	log *slog.Logger
	// askMu makes one question at a time (failures are asked about from
	// the orchestrator's goroutines); in buffers Stdin for all of them, so
	// an answer typed ahead for the next question is kept.
	askMu sync.Mutex
	in    *bufio.Reader
}

// ask prints a question on Stdout and reads the answer, one line from
// Stdin, trimmed; err is io.EOF when Stdin has ended.
func (e *Env) ask(question string) (string, error) {
	e.askMu.Lock()
	defer e.askMu.Unlock()
	if e.in == nil {
		e.in = bufio.NewReader(e.Stdin)
	}
	io.WriteString(e.Stdout, question)
	answer, err := e.in.ReadString('\n')
	return strings.TrimSpace(answer), err
}

// Logger returns the logger for this run (stderr, text or JSON, -v for debug).
func (e *Env) Logger() *slog.Logger {
	if e.log != nil {
		return e.log
	}
	level := slog.LevelInfo
	if e.Verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if e.LogFormat == "json" {
		h = slog.NewJSONHandler(e.Stderr, opts)
	} else {
		h = slog.NewTextHandler(e.Stderr, opts)
	}
	e.log = slog.New(h)
	return e.log
}

// Interactive says whether the user can be asked questions.
func (e *Env) Interactive() bool {
	if e.IsTerminal != nil {
		return e.IsTerminal()
	}
	in, ok1 := e.Stdin.(*os.File)
	out, ok2 := e.Stdout.(*os.File)
	return ok1 && ok2 && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(out.Fd()))
}

// ExitError carries a specific exit code; its message, if any, is printed once.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// errSilent is an error whose details the command has printed already.
var errSilent = &ExitError{Code: 1}

// NewRoot builds the racker command tree around env.
func NewRoot(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "racker",
		Short:         "Provision a whole server rack with Flatcar Container Linux over PXE and IPMI",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  # Check the OEM folder, look at the plan, provision the rack:
  racker factory check
  racker plan
  racker bootstrap

  # What happened to one node, and its console:
  racker status -o wide
  racker describe racker-worker-0
  racker console racker-worker-0`,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := env.fromEnvironment(cmd.Root().PersistentFlags()); err != nil {
				return err
			}
			if env.LogFormat != "text" && env.LogFormat != "json" {
				return usageErrorf("--log-format %q: want text or json", env.LogFormat)
			}
			// The rack's saved choices, before any command reads its flags.
			_, _, err := env.recallChoices(rememberedFlags(cmd))
			return err
		},
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&env.OEMDir, "oem-dir", "/usr/share/oem", "folder with nodes.csv, ipmi_user and ipmi_password")
	pf.StringVar(&env.StateDir, "state-dir", "/opt/racker-state", "folder where Racker keeps its state")
	pf.StringVar(&env.InstallDir, "install-dir", "/opt/racker", "folder of Racker's installed payload")
	pf.StringVar(&env.LogFormat, "log-format", "text", "log format: text or json")
	pf.BoolVarP(&env.Verbose, "verbose", "v", false, "debug logging")
	pf.StringVar(&env.MgmtMAC, "mgmt-mac", "", "MAC of the management node's row (default: the row with a MAC of this machine)")
	pf.StringVar(&env.PXEInterface, "pxe-interface", "", "internal (PXE) interface (default: the one with the management node's secondary MAC)")
	pf.VisitAll(func(f *pflag.Flag) { f.Usage += " [$" + envName(f.Name) + "]" })

	root.AddCommand(
		// The rack: check it, plan it, serve it, provision it, watch it.
		newFactoryCmd(env), newPlanCmd(env), newServeCmd(env), newBootstrapCmd(env), newReprovisionCmd(env), newStatusCmd(env),
		// Why, after the fact: one node's story, the rack's timeline.
		newDescribeCmd(env), newEventsCmd(env),
		// One node, through its BMC.
		newPowerCmd(env), newBootdevCmd(env), newConsoleCmd(env), newIPMICmd(env),
		// Racker itself: its releases and installs.
		newVersionCmd(env), newInstallCmd(env), newGetCmd(env), newUpdateCmd(env), newUpgradeCmd(env), newRollbackCmd(env), newReleaseCmd(env),
	)
	setUsageHints(root)
	registerCompletions(env, root)
	return root
}

// Main runs racker with args and returns the process exit code. Errors are
// printed once, here.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	return env.Run(ctx, args)
}

// Run runs racker with args on env's streams and returns the exit code;
// the error, if any, is printed once, with a pointer to --help after a
// usage error.
func (e *Env) Run(ctx context.Context, args []string) int {
	root := NewRoot(e)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	// BMC sessions kept for a next operation end with the command, not
	// with the BMC's inactivity timeout.
	bmc.CloseIdleSessions()
	if err == nil {
		return 0
	}
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		err = ee.Err
	}
	if err != nil {
		fmt.Fprintln(e.Stderr, "racker:", err)
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(e.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		if code == 1 {
			code = 2
		}
	}
	return code
}

// envName is the variable of a global flag: RACKER_STATE_DIR for --state-dir.
func envName(flag string) string {
	return "RACKER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fromEnvironment sets the global flags not given on the command line from
// their RACKER_* variables (racker serve's unit reads them from
// /etc/racker/racker.env): the command line wins, then the environment,
// then the default.
func (e *Env) fromEnvironment(fs *pflag.FlagSet) error {
	getenv := e.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usageErrorf("%s=%q: %v", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// rememberedFlags is the flag set whose remembered choices a command has,
// or nil when it has none.
func rememberedFlags(cmd *cobra.Command) *pflag.FlagSet {
	for _, r := range remembered {
		if cmd.Flags().Lookup(r.name) != nil {
			return cmd.Flags()
		}
	}
	return nil
}
