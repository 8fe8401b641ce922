package licenses

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// MITText is the MIT licence as github.com/spf13/… and many others ship it.
const MITText = `MIT License

Copyright (c) 2026 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`

// gplNotice is the GPL-2.0-or-later notice a GPL program's COPYING starts with.
const gplNotice = `This program is free software; you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation; either version 2 of the License, or
(at your option) any later version.

This program is distributed in the hope that it will be useful,
but WITHOUT ANY WARRANTY; without even the implied warranty of
MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
GNU General Public License for more details.

You should have received a copy of the GNU General Public License along
with this program; if not, write to the Free Software Foundation, Inc.,
51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA.
`

func apacheText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// moduleDir writes files into a fresh folder standing for a module.
func moduleDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		ids     []string
		notice  bool
		problem string // substring; "" means it passes
	}{
		{name: "apache with notice", files: map[string]string{"LICENSE": apacheText(t), "NOTICE": "Copyright 2026 Someone\n", "main.go": "package x\n"},
			ids: []string{"Apache-2.0"}, notice: true},
		{name: "mit as LICENSE.md", files: map[string]string{"LICENSE.md": MITText}, ids: []string{"MIT"}},
		{name: "dual files", files: map[string]string{"LICENSE-MIT": MITText, "LICENSE-APACHE": apacheText(t)}, ids: []string{"Apache-2.0", "MIT"}},
		{name: "docs licence is not judged", files: map[string]string{"LICENSE": MITText, "LICENSE.docs": "Creative Commons, but not quite.\n"}, ids: []string{"MIT"}},
		{name: "go files named license are code", files: map[string]string{"LICENSE": MITText, "license.go": "package x\n", "license_test.go": "package x\n"}, ids: []string{"MIT"}},
		{name: "no licence file", files: map[string]string{"main.go": "package x\n", "README.md": "MIT licensed, trust me\n"},
			problem: "no licence file"},
		{name: "unknown terms", files: map[string]string{"LICENSE": "You may use this software on Tuesdays only.\n"},
			problem: "only 0% of LICENSE is licence text"},
		{name: "known licence with unknown extra terms", files: map[string]string{"LICENSE": MITText + strings.Repeat("Additionally, you may not run this software on a rack of servers, nor near one, nor in any data centre anywhere. ", 12)},
			ids: []string{"MIT"}, problem: "of LICENSE is licence text licensecheck knows"},
		{name: "gpl", files: map[string]string{"COPYING": gplNotice},
			problem: "is not an accepted licence for code built into Racker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Classify(moduleDir(t, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ids != nil && strings.Join(f.IDs, ",") != strings.Join(tc.ids, ",") {
				t.Errorf("IDs = %v, want %v", f.IDs, tc.ids)
			}
			if f.Notice != tc.notice {
				t.Errorf("Notice = %v, want %v", f.Notice, tc.notice)
			}
			if tc.problem == "" && f.Problem != "" {
				t.Errorf("problem %q, want none", f.Problem)
			}
			if tc.problem != "" && !strings.Contains(f.Problem, tc.problem) {
				t.Errorf("problem %q, want one containing %q", f.Problem, tc.problem)
			}
		})
	}
}

func TestClassifyMissingFolder(t *testing.T) {
	if _, err := Classify(filepath.Join(t.TempDir(), "gone")); err == nil || !strings.Contains(err.Error(), "reading the module folder") {
		t.Fatalf("Classify of a missing folder: %v", err)
	}
}

// The whole generator on a real (temporary) Go module whose dependency
// lives in a local folder: go list finds it, a missing licence fails the
// report, an MIT one passes and is rendered with where its code goes.
func TestGenerateOnAModule(t *testing.T) {
	dir := fixture(t, nil)
	ctx := context.Background()
	opts := Options{Dir: dir, Go: goCmd(t), Scope: Scope{Binaries: map[string]string{"app": "./cmd/app"}}}
	rep, err := Generate(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	probs := strings.Join(rep.Problems(), "\n")
	if !strings.Contains(probs, "example.com/dep") || !strings.Contains(probs, "no licence file") {
		t.Fatalf("problems of a dependency without a licence:\n%s", probs)
	}
	if err := os.WriteFile(filepath.Join(dir, "dep", "LICENSE"), []byte(MITText), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err = Generate(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if p := rep.Problems(); len(p) != 0 {
		t.Fatalf("problems with an MIT dependency: %v", p)
	}
	doc := string(rep.Markdown())
	for _, want := range []string{"| `example.com/dep` | v0.0.0 (replaced by ./dep) | MIT | app |  |", "| Go standard library and runtime | the toolchain's | BSD-3-Clause | app |", "| MIT | 1 |"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/licenses.md lacks %q:\n%s", want, doc)
		}
	}
}

func TestManifestAssets(t *testing.T) {
	dir := t.TempDir()
	conf := `name: racker
state_version: 1
modules:
  - name: racker
    assets: [{path: bin/racker, dest: bin/racker}]
  - name: ipxe
    assets:
      - {path: /usr/lib/ipxe/ipxe.efi, dest: share/ipxe/ipxe.efi, license: GPL-2.0-only, source: "apt-get source ipxe"}
  - name: tool
    optional: true
    assets:
      - {url: "https://example.com/tool", sha256: "", dest: bin/tool}
`
	if err := os.WriteFile(filepath.Join(dir, "conf.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := r.readManifest(filepath.Join(dir, "conf.yaml"), "conf.yaml"); err != nil {
		t.Fatal(err)
	}
	if len(r.Assets) != 1 || r.Assets[0].Dest != "share/ipxe/ipxe.efi" || r.Assets[0].License != "GPL-2.0-only" {
		t.Errorf("assets = %+v, want only the iPXE file (the repository's own file is Racker's)", r.Assets)
	}
	if len(r.AssetProblems) != 1 || !strings.Contains(r.AssetProblems[0], "module tool, asset bin/tool: comes from outside the repository (https://example.com/tool) and declares no license") {
		t.Errorf("asset problems = %q", r.AssetProblems)
	}
	if p := r.Problems(); len(p) != 1 {
		t.Errorf("Problems() = %q, want the undeclared asset", p)
	}
}

// goCmd is the go command the generator runs (tests of this package need it).
func goCmd(t *testing.T) string {
	t.Helper()
	return testenv.RequireCommand(t, "go")
}

// fixture makes a Go module example.com/app with a binary ./cmd/app that
// imports example.com/dep, a module in the local folder dep/ (a replace), so
// go list works offline; depFiles go into dep/ beside its go.mod and code.
func fixture(t *testing.T, depFiles map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":          "module example.com/app\n\ngo 1.22\n\nrequire example.com/dep v0.0.0\n\nreplace example.com/dep => ./dep\n",
		"cmd/app/main.go": "package main\n\nimport _ \"example.com/dep\"\n\nfunc main() {}\n",
		"dep/go.mod":      "module example.com/dep\n\ngo 1.22\n",
		"dep/dep.go":      "package dep\n",
	}
	for name, text := range depFiles {
		files["dep/"+name] = text
	}
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOWORK", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	return dir
}
