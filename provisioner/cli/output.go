package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Every command that prints data takes -o as kubectl does: table (the
// default, for people), wide (more columns), json and yaml (for scripts:
// the same fields, which are only ever added to), name (one name a line,
// for xargs).

// outputFormats are the values of -o, in the order help lists them.
var outputFormats = []string{"table", "wide", "json", "yaml", "name"}

// output is a command's -o flag.
type output struct{ format string }

// addOutputFlag declares -o on cmd, with completion of its values.
func addOutputFlag(cmd *cobra.Command, o *output) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: "+strings.Join(outputFormats, ", "))
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))
}

// check refuses an unknown format before the command does any work.
func (o *output) check() error {
	if o.format == "text" {
		o.format = "table" // racker ipmi diag's old name for it
	}
	if !slices.Contains(outputFormats, o.format) {
		return usageErrorf("-o %q: want %s", o.format, strings.Join(outputFormats, ", "))
	}
	return nil
}

func (o *output) wide() bool { return o.format == "wide" }

// view is what a command prints: the value for json and yaml, how to draw
// it for table and wide, and its names for name.
type view struct {
	value any
	table func(w io.Writer, wide bool) error
	names func() []string
}

// print writes v in the chosen format.
func (o *output) print(w io.Writer, v view) error {
	switch o.format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v.value)
	case "yaml":
		b, err := toYAML(v.value)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "name":
		for _, n := range v.names() {
			if _, err := fmt.Fprintln(w, n); err != nil {
				return err
			}
		}
		return nil
	}
	return v.table(w, o.wide())
}

// toYAML renders a value as YAML with its JSON field names and order: the
// JSON form is the interface, YAML only another spelling of it.
func toYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	plain(&doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// plain drops the JSON spelling (flow style, quoted strings) the parser
// kept, except where a string would read as another type.
func plain(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = 0
		var probe any
		if yaml.Unmarshal([]byte(n.Value), &probe) != nil {
			n.Style = yaml.DoubleQuotedStyle
		} else if _, isString := probe.(string); !isString || n.Value == "" {
			n.Style = yaml.DoubleQuotedStyle
		}
	} else if n.Kind != yaml.ScalarNode {
		n.Style = 0
	}
	for _, c := range n.Content {
		plain(c)
	}
}
