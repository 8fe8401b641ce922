package simcli

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { register(newConsoleCmd) }

// escapeByte ends an interactive console session (Ctrl-], as telnet).
const escapeByte = 0x1d

func newConsoleCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "console NODE",
		Short: "Attach to a server's serial console (Ctrl-] to leave); its log is in `status`",
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
			conn, err := net.Dial("unix", sock)
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
				fmt.Fprintf(env.Stderr, "console of %s; Ctrl-] leaves\r\n", m.Name)
				in = &untilEscape{r: f}
			}
			done := make(chan error, 2)
			go func() { _, err := io.Copy(env.Stdout, conn); done <- err }()
			go func() { _, err := io.Copy(conn, in); done <- err }()
			<-done
			return nil
		},
	}
}

// untilEscape reads a terminal until the escape byte.
type untilEscape struct{ r io.Reader }

func (u *untilEscape) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if i := bytes.IndexByte(p[:n], escapeByte); i >= 0 {
		return i, io.EOF
	}
	return n, err
}
