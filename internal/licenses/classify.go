// Package licenses finds the licence of every Go module that Racker is built
// from, classifies it by its text and judges it against Racker's own licence,
// Apache-2.0. docs/licenses.md is its output (`make licenses` writes it,
// `make licenses-check` in `make lint` fails when it is stale or a licence is
// unknown or incompatible).
//
// A licence is read from the module's own files in the module cache, never
// from a registry's metadata: what a module ships is what binds us. The text
// is matched by github.com/google/licensecheck, and the verdict comes from an
// explicit list of accepted licences (Policy), so a new licence kind is a
// reviewed change to this file, not a silent pass.
package licenses

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/licensecheck"
)

// Policy maps each accepted licence (licensecheck's SPDX-like ID) to why code
// under it may be built into an Apache-2.0 program. Anything else fails.
var Policy = map[string]string{
	"Apache-2.0":       "Racker's own licence",
	"MIT":              "permissive; keep the notice",
	"MIT-0":            "permissive, no conditions",
	"BSD-2-Clause":     "permissive; keep the notice",
	"BSD-3-Clause":     "permissive; keep the notice, no endorsement",
	"ISC":              "permissive; keep the notice",
	"0BSD":             "permissive, no conditions",
	"Zlib":             "permissive; keep the notice, mark changes",
	"Unicode-DFS-2016": "permissive (Unicode data files); keep the notice",
	"CC0-1.0":          "public-domain dedication",
	"Unlicense":        "public-domain dedication",
	"MPL-2.0": "weak, file-level copyleft: may be linked into an Apache-2.0 program; " +
		"changes to the MPL files themselves must be published (we change none)",
}

// MinCoverage is how much of a licence file (in per cent of its words)
// must be licence text licensecheck knows. Below it the file holds terms
// nobody reviewed, and the module fails until a person reads it.
const MinCoverage = 75

var (
	// licenseFile: LICENSE, LICENCE.md, COPYING, LICENSE-MIT, UNLICENSE, …
	licenseFile = regexp.MustCompile(`(?i)^((un)?licen[cs]e|copying)([._-][a-z0-9._-]*)?$`)
	noticeFile  = regexp.MustCompile(`(?i)^notice([._-][a-z0-9._-]*)?$`)
	// docsFile names licence files that cover a module's documentation
	// (LICENSE.docs, LICENSE-docs): none of it is built into a program.
	docsFile = regexp.MustCompile(`(?i)[.-]docs?(\.[a-z]+)?$`)
)

// Finding is what one module's files say about its licence.
type Finding struct {
	// Files are the licence files read, relative to the module folder.
	Files []string
	// IDs are the licences found in them, sorted, each once.
	IDs []string
	// DocIDs are licences that cover only documentation (not judged).
	DocIDs []string
	// Notice is true when the module ships a NOTICE file, which Apache-2.0
	// §4(d) says must travel with redistributions.
	Notice bool
	// Problem says why the module fails (no licence, unknown or
	// incompatible text); empty when it passes.
	Problem string
}

// Classify reads the licence files at the top of a module folder and judges
// them against Policy.
func Classify(dir string) (Finding, error) {
	var f Finding
	entries, err := os.ReadDir(dir)
	if err != nil {
		return f, fmt.Errorf("reading the module folder %s: %w", dir, err)
	}
	ids := map[string]bool{}
	docIDs := map[string]bool{}
	var problems []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if noticeFile.MatchString(name) {
			f.Notice = true
			continue
		}
		if !licenseFile.MatchString(name) || strings.HasSuffix(name, ".go") {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return f, fmt.Errorf("reading %s: %w", filepath.Join(dir, name), err)
		}
		f.Files = append(f.Files, name)
		cov := licensecheck.Scan(text)
		docs := docsFile.MatchString(name)
		for _, m := range cov.Match {
			if docs {
				docIDs[m.ID] = true
			} else {
				ids[m.ID] = true
			}
		}
		if !docs && cov.Percent < MinCoverage {
			problems = append(problems, fmt.Sprintf("only %.0f%% of %s is licence text licensecheck knows (%s); read it and classify it by hand",
				cov.Percent, name, orNone(sorted(keysOf(cov.Match)))))
		}
	}
	f.IDs, f.DocIDs = sorted(ids), sorted(docIDs)
	switch {
	case len(f.Files) == 0:
		problems = append(problems, "no licence file (LICENSE, COPYING, …) in the module: without one nobody may use it")
	case len(f.IDs) == 0:
		problems = append(problems, fmt.Sprintf("no known licence in %s", strings.Join(f.Files, ", ")))
	}
	for _, id := range f.IDs {
		if _, ok := Policy[id]; !ok {
			problems = append(problems, fmt.Sprintf("%s is not an accepted licence for code built into Racker (Apache-2.0); see Policy in internal/licenses", id))
		}
	}
	f.Problem = strings.Join(problems, "; ")
	return f, nil
}

func keysOf(ms []licensecheck.Match) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		out[m.ID] = true
	}
	return out
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "nothing recognised"
	}
	return "recognised: " + strings.Join(ids, ", ")
}
