package simcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { register(newConsoleCmd) }

// escapeByte ends an interactive console session (Ctrl-], as telnet); so
// does ~. at the start of a line, as in racker console, ssh and ipmitool.
const escapeByte = 0x1d

func newConsoleCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "console NODE",
		Short: "Attach to a server's serial console (~. at the start of a line or Ctrl-] to leave); its log is in `status`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := env.LoadRack()
			if err != nil {
				return err
			}
			m, err := s.Machine(args[0])
			if err != nil {
				return err
			}
			if m.Name == "mgmt" {
				return fmt.Errorf("the management node is a namespace: use racker-sim exec")
			}
			sock := s.ConsoleSocket(m.Name)
			conn, err := dialConsole(cmd.Context(), sock, consoleWait, func() {
				fmt.Fprintf(env.Stderr, "waiting up to %s for the console of %s (is it powering on?)\n", consoleWait, m.Name)
			})
			if err != nil {
				return fmt.Errorf("while connecting to the console of %s at %s (is the VM on? is a BMC SOL session holding it?): %w", m.Name, sock, err)
			}
			defer conn.Close()
			in := env.Stdin
			if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				old, err := term.MakeRaw(int(f.Fd()))
				if err != nil {
					return fmt.Errorf("while putting the terminal in raw mode: %w", err)
				}
				defer term.Restore(int(f.Fd()), old)
				fmt.Fprintf(env.Stderr, "console of %s; ~. at the start of a line or Ctrl-] leaves\r\n", m.Name)
				in = &untilEscape{r: f, lineStart: true}
			}
			done := make(chan error, 2)
			go func() { _, err := io.Copy(env.Stdout, conn); done <- err }()
			go func() { _, err := io.Copy(conn, in); done <- err }()
			<-done
			return nil
		},
	}
}

// consoleWait is how long console waits for a machine's serial socket to
// appear: a BMC answers power on before the VM has started (as IPMI
// allows), so a console attached right after it would otherwise fail.
const consoleWait = 30 * time.Second

// dialConsole connects to the serial socket at sock, retrying while it is
// not there yet or not listening (the VM starting) for up to wait; waiting
// is called once, when the first try fails.
func dialConsole(ctx context.Context, sock string, wait time.Duration, waiting func()) (net.Conn, error) {
	deadline := time.Now().Add(wait)
	for first := true; ; first = false {
		conn, err := net.Dial("unix", sock)
		if err == nil || !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)) || time.Now().After(deadline) {
			return conn, err
		}
		if first {
			waiting()
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// untilEscape reads a terminal until Ctrl-] or ~. at the start of a
// line; a line-start ~ is held back until the next byte says which it is
// (~~ sends one ~).
type untilEscape struct {
	r         io.Reader
	lineStart bool
	tilde     bool
	pending   []byte
	end       bool
}

func (u *untilEscape) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.end {
			return 0, io.EOF
		}
		buf := make([]byte, len(p))
		n, err := u.r.Read(buf)
		for _, b := range buf[:n] {
			if u.end {
				break
			}
			switch {
			case b == escapeByte:
				u.end = true
			case u.tilde:
				u.tilde = false
				if b == '.' {
					u.end = true
					continue
				}
				if b != '~' {
					u.pending = append(u.pending, '~')
				}
				u.pending = append(u.pending, b)
			case u.lineStart && b == '~':
				u.tilde = true
				continue
			default:
				u.pending = append(u.pending, b)
			}
			u.lineStart = b == '\r' || b == '\n'
		}
		if err != nil && len(u.pending) == 0 {
			return 0, err
		}
		if err != nil {
			u.end = true
		}
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}
