package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newConsoleCmd(env *Env) *cobra.Command {
	var bf bmcFlags
	cmd := &cobra.Command{
		Use:   "console NODE|--bmc URL",
		Short: "Interactive serial-over-LAN console of a node; type ~. at the start of a line to leave",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, label, err := env.openTarget(cmd.Context(), &bf, args)
			if err != nil {
				return err
			}
			defer c.Close()
			con, err := c.Console(cmd.Context())
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
			fmt.Fprintf(env.Stderr, "[connected to the serial console of %s; type ~. at the start of a line to leave]\r\n", label)
			err = relayConsole(con, env.Stdin, env.Stdout)
			fmt.Fprintf(env.Stderr, "\r\n[console of %s closed]\r\n", label)
			return err
		},
	}
	addBMCFlags(cmd.Flags(), &bf)
	return cmd
}

// relayConsole copies the console to out and in to the console until the
// user types ~. at the start of a line, in ends, or the console ends.
func relayConsole(con io.ReadWriter, in io.Reader, out io.Writer) error {
	fromNode := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, con)
		fromNode <- err
	}()
	toNode := make(chan error, 1)
	go func() {
		_, err := io.Copy(con, &escapeReader{r: in, atLineStart: true})
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
// start of a line: "~." ends the session, "~~" sends one "~"; a "~"
// followed by anything else is sent as typed.
type escapeReader struct {
	r           io.Reader
	atLineStart bool
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
