package licenses

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Module is a module of the build list that gives code to at least one
// package Racker builds: a binary, a test or a tool.
type Module struct {
	Path    string
	Version string
	// Dir is the module's folder (in the module cache, or a replacement).
	Dir string
	// In names where its code goes: the binaries (racker, racker-sim) it
	// is linked into, or "tests" when only tests and tools use it.
	In []string
}

// Stdlib is the pseudo-module path under which the Go standard library and
// runtime (linked into every binary) are listed.
const Stdlib = "std"

// TestsOnly is Module.In for modules that no binary links.
const TestsOnly = "tests"

// Scope says which packages count: the ones the binaries link, and the ones
// every test and tool of the module builds (with the build tags the test
// tiers use, so the e2e suite is included).
type Scope struct {
	// Binaries maps a binary's name to its main package, e.g.
	// "racker" → "./cmd/racker".
	Binaries map[string]string
	// All is the package pattern of everything else (default "./...").
	All string
	// Tags are build tags for the All listing (e.g. "e2e").
	Tags []string
}

// ListModules asks `go list` in dir for the modules the scope's packages
// come from. Only modules that provide a package are listed: a go.mod line
// whose module no package uses puts no code into anything.
func ListModules(ctx context.Context, goCmd, dir string, scope Scope) ([]Module, error) {
	if scope.All == "" {
		scope.All = "./..."
	}
	flags := []string{"-test"}
	if len(scope.Tags) > 0 {
		flags = append(flags, "-tags", strings.Join(scope.Tags, ","))
	}
	all, err := goList(ctx, goCmd, dir, flags, scope.All)
	if err != nil {
		return nil, err
	}
	in := map[string][]string{}
	var names []string
	for name := range scope.Binaries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mods, err := goList(ctx, goCmd, dir, nil, scope.Binaries[name])
		if err != nil {
			return nil, err
		}
		for p := range mods {
			in[p] = append(in[p], name)
			if _, ok := all[p]; !ok { // a binary outside the All pattern
				all[p] = mods[p]
			}
		}
	}
	var out []Module
	for p, m := range all {
		m.In = in[p]
		if len(m.In) == 0 {
			m.In = []string{TestsOnly}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Path == Stdlib) != (out[j].Path == Stdlib) {
			return out[i].Path == Stdlib
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

// goList returns the modules (path → module) of pattern's packages and all
// their dependencies; the standard library counts as the module Stdlib.
func goList(ctx context.Context, goCmd, dir string, flags []string, pattern string) (map[string]Module, error) {
	// A replaced module keeps its own path; its version says what replaces
	// it, and its files (the licence too) are the replacement's.
	const format = `{{if .Standard}}std{{else}}{{with .Module}}{{if not .Main}}{{.Path}}	` +
		`{{with .Replace}}{{$.Module.Version}} (replaced by {{.Path}}{{with .Version}} {{.}}{{end}})	{{.Dir}}{{else}}{{.Version}}	{{.Dir}}{{end}}` +
		`{{end}}{{end}}{{end}}`
	args := append([]string{"list", "-deps", "-f", format}, flags...)
	args = append(args, pattern)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	// The release builds linux/amd64 without cgo; listing for that platform
	// keeps the output the same on any machine.
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the modules of %s (go %s): %w: %s", pattern, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	mods := map[string]Module{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case line == Stdlib:
			mods[Stdlib] = Module{Path: Stdlib}
		default:
			f := strings.Split(line, "\t")
			if len(f) != 3 || f[2] == "" {
				return nil, fmt.Errorf("listing the modules of %s: unexpected line %q from go list (is the module downloaded?)", pattern, line)
			}
			mods[f[0]] = Module{Path: f[0], Version: f[1], Dir: f[2]}
		}
	}
	if _, ok := mods[Stdlib]; ok {
		root, err := exec.CommandContext(ctx, goCmd, "env", "GOROOT").Output()
		if err != nil {
			return nil, fmt.Errorf("finding GOROOT for the standard library's licence: %w", err)
		}
		mods[Stdlib] = Module{Path: Stdlib, Dir: filepath.Clean(strings.TrimSpace(string(root)))}
	}
	return mods, nil
}
