// Command licenses writes docs/licenses.md, the licences of every Go module
// Racker is built from and of the third-party files its installer image
// ships, and fails when one is unknown or not accepted (internal/licenses
// says how). With -check it writes nothing and fails when the file is stale.
//
//	go run ./scripts/licenses          # make licenses
//	go run ./scripts/licenses -check   # make licenses-check (in make lint)
//
// Run it from the repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/racker/racker/internal/licenses"
)

func main() {
	out := flag.String("out", "docs/licenses.md", "file to write (or, with -check, to compare), relative to the repository root")
	check := flag.Bool("check", false, "write nothing; fail when the file differs from what would be written")
	manifest := flag.String("manifest", "release/conf.yaml", "installer payload manifest whose third-party files are listed")
	flag.Parse()
	err := licenses.Run(context.Background(), licenses.Options{
		Dir: ".",
		Scope: licenses.Scope{
			Binaries: map[string]string{"racker": "./cmd/racker", "racker-sim": "./cmd/racker-sim"},
			Tags:     []string{"e2e"},
		},
		Manifest: *manifest,
	}, *out, *check, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "licenses:", err)
		os.Exit(1)
	}
}
