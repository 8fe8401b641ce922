package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// usageError is a command line racker cannot run as typed (an unknown
// flag, a missing argument, an -o it does not know): Run prints it with a
// pointer to the command's --help and exits 2.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// setUsageHints makes every flag error and every argument error of the
// tree a usage error.
func setUsageHints(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return &usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// isCobraUsageError recognises the one usage error cobra makes without a
// hook: a subcommand that does not exist.
func isCobraUsageError(err error) bool {
	var ue *usageError
	return err != nil && !errors.As(err, &ue) && strings.HasPrefix(err.Error(), "unknown command ")
}
