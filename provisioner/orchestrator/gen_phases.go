//go:build ignore

// gen_phases prints the orchestrator's transition table as Markdown
// (orchestrator.WritePhaseTable) into the file named by -o; with -check
// it only compares, and fails when the file is not current.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/racker/racker/provisioner/orchestrator"
)

func main() {
	out := flag.String("o", "", "file to write")
	check := flag.Bool("check", false, "compare with the file instead of writing it")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen_phases: -o FILE is required")
		os.Exit(2)
	}
	var b bytes.Buffer
	if err := orchestrator.WritePhaseTable(&b); err != nil {
		fmt.Fprintln(os.Stderr, "gen_phases:", err)
		os.Exit(1)
	}
	if *check {
		have, err := os.ReadFile(*out)
		if err != nil || !bytes.Equal(have, b.Bytes()) {
			fmt.Fprintf(os.Stderr, "%s is not the current phase table (%v); run make generate and commit it\n", *out, err)
			os.Exit(1)
		}
		return
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen_phases:", err)
		os.Exit(1)
	}
}
