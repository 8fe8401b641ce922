package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/racker/racker/provisioner/bmc"
)

// consoleHelp is what ~? prints, as ipmitool's does.
const consoleHelp = "\r\n[racker console escapes, at the start of a line:\r\n" +
	"  ~.  leave the console\r\n" +
	"  ~B  send a serial BREAK to the node (then a key within 5 s: Linux's magic SysRq)\r\n" +
	"  ~?  this help\r\n" +
	"  ~~  send one ~]\r\n"

func newConsoleCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "console NODE|--bmc URL",
		Short: "Interactive serial-over-LAN console of a node; type ~. at the start of a line to leave, ~? for help",
		Long: `Attach to a node's serial console over IPMI serial-over-LAN. Escapes, at the
start of a line, as with ssh and ipmitool: ~. leaves, ~B sends a serial BREAK,
~? lists them, ~~ sends one ~.

A BMC allows one console at a time. racker bootstrap and reprovision record
every node's console to STATE/console/HOSTNAME.log while they run (racker
describe shows its tail), and a client that died can leave the console active
until the BMC's session timeout: --force ends whichever console is active
first, as ipmitool's sol deactivate does.`,
		Example: `  racker console racker-worker-0
  racker console 00:11:22:33:44:20 --force
  racker console --bmc ipmi://172.24.213.3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, label, err := env.openTarget(cmd.Context(), &bf, args)
			if err != nil {
				return err
			}
			defer c.Close()
			if force {
				d, ok := c.(bmc.ConsoleDeactivator)
				if !ok {
					return fmt.Errorf("console --force: this BMC driver cannot end another console")
				}
				if err := d.DeactivateConsole(cmd.Context()); err != nil {
					return fmt.Errorf("console --force: %w", err)
				}
				fmt.Fprintf(env.Stderr, "[ended the console that was active on %s]\r\n", label)
			}
			con, err := c.Console(cmd.Context())
			if errors.Is(err, bmc.ErrConsoleBusy) {
				return fmt.Errorf("%w\n(a running racker bootstrap or reprovision records it; --force takes it over, e.g. from a client that died)", err)
			}
			if err != nil {
				return err
			}
			defer con.Close()

			// A terminal goes raw so keys (Ctrl-C included) reach the node;
			// ~. is the only way out, as with ssh and ipmitool.
			if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				old, err := term.MakeRaw(int(f.Fd()))
				if err != nil {
					return fmt.Errorf("console: making the terminal raw: %w", err)
				}
				defer term.Restore(int(f.Fd()), old)
			}
			fmt.Fprintf(env.Stderr, "[connected to the serial console of %s; type ~. at the start of a line to leave, ~? for help]\r\n", label)
			commands := map[byte]func(){
				'?': func() { io.WriteString(env.Stderr, consoleHelp) },
				'B': func() { sendBreak(cmd.Context(), env, con) },
			}
			err = relayConsole(con, &escapeReader{r: env.Stdin, atLineStart: true, commands: commands}, env.Stdout)
			fmt.Fprintf(env.Stderr, "\r\n[console of %s closed]\r\n", label)
			return err
		},
	}
	addBMCFlags(cmd.Flags(), &bf)
	cmd.Flags().BoolVar(&force, "force", false, "end the console that is active on the node (a stale session) before attaching")
	return cmd
}

// sendBreak sends a serial BREAK through a console that can.
func sendBreak(ctx context.Context, env *Env, con io.ReadWriteCloser) {
	b, ok := con.(bmc.Breaker)
	if !ok {
		io.WriteString(env.Stderr, "\r\n[this console cannot send a BREAK]\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.SendBreak(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "\r\n[BREAK not sent: %v]\r\n", err)
		return
	}
	io.WriteString(env.Stderr, "\r\n[BREAK sent]\r\n")
}

// relayConsole copies the console to out and in (already escape-filtered)
// to the console until the user leaves, in ends, or the console ends.
func relayConsole(con io.ReadWriter, in io.Reader, out io.Writer) error {
	fromNode := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, con)
		fromNode <- err
	}()
	toNode := make(chan error, 1)
	go func() {
		_, err := io.Copy(con, in)
		toNode <- err
	}()
	select {
	case err := <-fromNode:
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			return fmt.Errorf("console: %w", err)
		}
		return nil
	case err := <-toNode:
		if errors.Is(err, errEscape) || err == nil {
			return nil
		}
		return fmt.Errorf("console: %w", err)
	}
}

// errEscape ends the input copy when the user types ~. at a line start.
var errEscape = errors.New("escape")

// escapeReader passes input through except the escape sequences at the
// start of a line: "~." ends the session, "~~" sends one "~", "~X" runs
// commands[X] (help, BREAK) and sends nothing; a "~" followed by anything
// else is sent as typed.
type escapeReader struct {
	r           io.Reader
	atLineStart bool
	commands    map[byte]func()
	tilde       bool // a line-start "~" is held back
	pending     []byte
	err         error // returned once pending is drained
}

func (e *escapeReader) Read(p []byte) (int, error) {
	for {
		if len(e.pending) == 0 && e.err != nil {
			return 0, e.err
		}
		if len(e.pending) > 0 {
			n := copy(p, e.pending)
			e.pending = e.pending[n:]
			return n, nil
		}
		buf := make([]byte, len(p))
		n, err := e.r.Read(buf)
		for _, b := range buf[:n] {
			switch {
			case e.tilde:
				e.tilde = false
				if cmd, ok := e.commands[b]; ok {
					cmd()
					e.atLineStart = true // ssh: another escape may follow
					continue
				}
				switch b {
				case '.':
					return e.flush(p, errEscape)
				case '~':
					e.pending = append(e.pending, '~')
				default:
					e.pending = append(e.pending, '~', b)
				}
				e.atLineStart = b == '\r' || b == '\n'
			case e.atLineStart && b == '~':
				e.tilde = true
			default:
				e.pending = append(e.pending, b)
				e.atLineStart = b == '\r' || b == '\n'
			}
		}
		if err != nil {
			return e.flush(p, err)
		}
	}
}

// flush returns what is pending with err once nothing is left.
func (e *escapeReader) flush(p []byte, err error) (int, error) {
	n := copy(p, e.pending)
	e.pending = e.pending[n:]
	if len(e.pending) > 0 {
		e.err = err
		return n, nil
	}
	return n, err
}
