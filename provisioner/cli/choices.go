package cli

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// A rack remembers the choices that shape it. racker plan and racker
// bootstrap save them in plan.json (plan.State.Choices) the first time;
// every later command reads them instead of its flags' defaults, so racker
// serve started by its unit (no flags) never renames or renumbers the rack.
// A flag that contradicts a saved choice is refused; --replan changes
// choices, after showing what moves.

// rememberedFlag is a flag whose value the rack remembers.
type rememberedFlag struct {
	name string
	what string // names the choice in messages
	// canon makes equal choices compare equal ("10.9.0.7/24" is
	// "10.9.0.0/24"; MAC lists in any case and order); nil keeps the value.
	canon func(string) string
}

// remembered lists them: the plan's choices, then bootstrap's answers (the
// cluster profile, its domain and public addresses, the nodes' firmware,
// the OS to install). Per-run settings (parallelism, timeouts, the failure
// policy) are not remembered.
var remembered = []rememberedFlag{
	{"subnet", "the internal subnet", canonSubnet},
	{"cluster-name", "the cluster name", nil},
	{"controllers", "the number of controllers", nil},
	{"controller-type", "the controllers' node type", nil},
	{"storage-type", "the storage nodes' type", nil},
	{"storage-nodes", "the number of storage nodes", nil},
	{"exclude", "the nodes left out", canonMACs},
	{"provision", "the cluster profile", nil},
	{"domain", "the cluster's DNS domain", nil},
	{"public-ips", "the public addresses file", canonPath},
	{"uefi-types", "the node types that boot UEFI", canonList},
	{"os", "the OS to install", nil},
	{"os-version", "the OS version", nil},
	{"flatcar-channel", "the Flatcar channel", nil},
}

// savesChoices says whether a command saves the choices it plans with:
// the commands where the user makes them. Others (serve, reprovision,
// status, power, …) only read them, so racker serve, enabled when Racker
// is installed, does not fix the defaults before the bootstrap wizard
// asks.
func savesChoices(fs *pflag.FlagSet) bool {
	return fs != nil && fs.Lookup("replan") != nil
}

func canonSubnet(s string) string {
	if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
		return p.Masked().String()
	}
	return s
}

func canonMACs(s string) string {
	var out []string
	for _, m := range splitList(s) {
		if n, err := inventory.NormalizeMAC(m); err == nil {
			m = n
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

func canonList(s string) string {
	out := splitList(s)
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

func canonPath(s string) string {
	if s == "" {
		return ""
	}
	if a, err := filepath.Abs(s); err == nil {
		return a
	}
	return s
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// flagValue is a flag's value in the form choices are saved in.
func flagValue(r rememberedFlag, f *pflag.Flag) string {
	v := f.Value.String()
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		v = strings.Join(sv.GetSlice(), ",")
	}
	if r.canon != nil {
		v = r.canon(v)
	}
	return v
}

// setFlag gives a flag that was not on the command line a saved value,
// leaving it unchanged in pflag's eyes (Changed stays false).
func setFlag(f *pflag.Flag, v string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.Replace(splitList(v))
	}
	return f.Value.Set(v)
}

// choiceChange is one remembered choice a --replan changes.
type choiceChange struct {
	flag, from, to string
}

// recallChoices gives the command's remembered flags the rack's saved
// values, where the command line did not set them, and checks the ones it
// did set: a contradiction is an error naming both values and --replan,
// unless the command runs with --replan, in which case it is a change to
// show. It reads plan.json without a lock; a missing one has no choices.
func (e *Env) recallChoices(fs *pflag.FlagSet) (saved map[string]string, changes []choiceChange, err error) {
	if fs == nil {
		return nil, nil, nil
	}
	st, err := plan.NewStore(e.StateDir).Load()
	if err != nil {
		return nil, nil, err
	}
	replan := false
	if f := fs.Lookup("replan"); f != nil {
		replan = f.Value.String() == "true"
	}
	var contradictions []string
	for _, r := range remembered {
		f := fs.Lookup(r.name)
		if f == nil {
			continue
		}
		old, ok := st.Choices[r.name]
		if !ok {
			continue
		}
		if !f.Changed {
			if err := setFlag(f, old); err != nil {
				return nil, nil, fmt.Errorf("the saved choice %s=%q in %s: %w", r.name, old, plan.NewStore(e.StateDir).Path, err)
			}
			continue
		}
		if now := flagValue(r, f); now != old {
			if replan {
				changes = append(changes, choiceChange{r.name, old, now})
				continue
			}
			contradictions = append(contradictions, fmt.Sprintf("--%s %s: this rack was planned with %s %s", r.name, quoteEmpty(now), r.what, quoteEmpty(old)))
		}
	}
	if len(contradictions) > 0 {
		return nil, nil, &ExitError{Code: 2, Err: fmt.Errorf("%s (saved in %s).\nRacker keeps a rack's choices so that no later command renames or renumbers it; to change them, run racker plan --replan with the new flags (it shows what changes and asks first)",
			strings.Join(contradictions, "; "), plan.NewStore(e.StateDir).Path)}
	}
	return st.Choices, changes, nil
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// choicesToSave are the remembered flags of a command with their current
// values, the auto choices resolved by the plan: "controllers 0" (3 when a
// type has 3 nodes, else 1) and an empty controller type (the most common)
// are saved as what they chose, so a row added later never changes them.
func choicesToSave(fs *pflag.FlagSet, p *plan.Plan) map[string]string {
	out := map[string]string{}
	for _, r := range remembered {
		if f := fs.Lookup(r.name); f != nil {
			out[r.name] = flagValue(r, f)
		}
	}
	ctrl := p.Controllers()
	if len(ctrl) == 0 {
		// A rack of only the management node: nothing is chosen yet.
		delete(out, "controllers")
		delete(out, "controller-type")
		return out
	}
	if out["controllers"] == "0" {
		out["controllers"] = fmt.Sprint(len(ctrl))
	}
	if v, ok := out["controller-type"]; ok && v == "" {
		out["controller-type"] = ctrl[0].Type
	}
	return out
}
