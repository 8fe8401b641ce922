package cli

import (
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion (racker completion bash|zsh|fish|powershell, cobra's):
// NODE arguments complete to the plan's hostnames and primary MACs, and
// flags with a fixed set of values to those values.

// enumFlags are the flags with a fixed set of values, wherever they occur.
var enumFlags = map[string][]string{
	"log-format":      {"text", "json"},
	"on-failure":      {"retry", "exclude", "ask", "cancel"},
	"provision":       {"flatcar", "lokomotive"},
	"os":              {"flatcar", "testos"},
	"flatcar-channel": {"stable", "beta", "alpha", "lts"},
	"bmc-driver":      bmcDrivers,
	"output":          outputFormats,
}

// nodeCommands take NODE arguments: how many, and what follows them.
var nodeCommands = map[string]struct {
	many bool     // NODE...
	then []string // the word after NODE (power's action, bootdev's device)
}{
	"power":       {then: []string{"on", "off", "cycle", "reset", "status"}},
	"bootdev":     {then: []string{"pxe", "disk", "none"}},
	"console":     {},
	"diag":        {},
	"describe":    {},
	"events":      {},
	"reprovision": {many: true},
	"forget":      {},
	"retire":      {},
	"replace":     {}, // OLD; the new MACs are the operator's to type
}

// registerCompletions wires the completions into the tree.
func registerCompletions(env *Env, root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		seen := map[string]bool{}
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if vals, ok := enumFlags[f.Name]; ok && !seen[f.Name] {
					seen[f.Name] = true
					// An error means it is registered already (addOutputFlag).
					_ = c.RegisterFlagCompletionFunc(f.Name, cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp))
				}
			})
		}
		if nc, ok := nodeCommands[c.Name()]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) == 0 || nc.many {
					return env.nodeNames(toComplete), cobra.ShellCompDirectiveNoFileComp
				}
				if len(args) == 1 && nc.then != nil {
					return nc.then, cobra.ShellCompDirectiveNoFileComp
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// nodeNames are the plan's hostnames and primary MACs that start with
// prefix, from a dry run with the rack's saved choices; nothing when there
// is no rack. Completion must never write state nor print warnings.
func (e *Env) nodeNames(prefix string) []string {
	e.log = slog.New(slog.DiscardHandler)
	fs := pflag.NewFlagSet("complete", pflag.ContinueOnError)
	var pf PlanFlags
	AddPlanFlags(fs, &pf)
	_, p, err := e.MakePlan(&pf, false)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range p.Servers() {
		for _, name := range []string{n.Hostname, n.PrimaryMAC} {
			if name != "" && strings.HasPrefix(name, prefix) {
				out = append(out, name)
			}
		}
	}
	return out
}
