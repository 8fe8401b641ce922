// Package elfdeps finds the files a dynamically linked program needs at run
// time: its ELF interpreter (the dynamic loader) and, transitively, every
// shared library its DT_NEEDED entries name, searched the way the loader
// searches (DT_RPATH or DT_RUNPATH with $ORIGIN, then the system folders).
// It does what `ldd` shows without running anything, so the test OS's build
// can copy Debian's binaries into an initramfs on any build machine and
// knows exactly which files it took.
//
// Files are looked up under one or more roots in order (a folder with
// unpacked .deb packages first, then the host's "/"), so a program taken
// from a package that is not installed finds its libraries beside it.
package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultLibDirs are the folders the x86-64 Debian loader searches when a
// program names no run path (ld.so.conf plus the built-in defaults).
var DefaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// File is one file to copy: where it is on the build machine (Source, with
// symlinks resolved) and the absolute path it must have on the target
// (Target, the path the loader will look for).
type File struct {
	Source string
	Target string
}

// Resolver finds files under Roots (tried in order; "" or "/" is the host).
type Resolver struct {
	Roots   []string
	LibDirs []string // default DefaultLibDirs
}

// Closure returns, for the programs (absolute target paths, found under the
// roots like everything else), the programs themselves, their interpreter
// and every shared library they need, transitively, sorted by Target. A
// library that cannot be found is an error naming the program that needs it.
func (r Resolver) Closure(programs ...string) ([]File, error) {
	if len(r.LibDirs) == 0 {
		r.LibDirs = DefaultLibDirs
	}
	out := map[string]File{}
	type job struct{ target, neededBy string }
	queue := []job{}
	for _, p := range programs {
		queue = append(queue, job{target: p})
	}
	for len(queue) > 0 {
		j := queue[0]
		queue = queue[1:]
		if _, done := out[j.target]; done {
			continue
		}
		src, err := r.find(j.target)
		if err != nil {
			if j.neededBy != "" {
				return nil, fmt.Errorf("%s needs %s: %w", j.neededBy, j.target, err)
			}
			return nil, err
		}
		out[j.target] = File{Source: src, Target: j.target}
		needed, interp, runpath, err := readDynamic(src)
		if err != nil {
			return nil, err
		}
		if interp != "" {
			queue = append(queue, job{target: canonicalLibPath(interp), neededBy: j.target})
		}
		for _, lib := range needed {
			t, err := r.locate(lib, runpath, path.Dir(j.target))
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", j.target, lib, err)
			}
			queue = append(queue, job{target: t, neededBy: j.target})
		}
	}
	files := make([]File, 0, len(out))
	for _, f := range out {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Target < files[j].Target })
	return files, nil
}

// find answers where target is under the first root that has it, with
// symlinks followed (the content is what gets copied).
func (r Resolver) find(target string) (string, error) {
	var tried []string
	for _, root := range r.roots() {
		p := filepath.Join(root, target)
		// Symlinks inside a root may be absolute ("/lib/x" → "/usr/lib/x"):
		// resolve them within the same root.
		real, err := resolveIn(root, target)
		if err == nil {
			if st, err := os.Stat(real); err == nil && st.Mode().IsRegular() {
				return real, nil
			}
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("not found (looked for %s)", strings.Join(tried, ", "))
}

// locate turns a DT_NEEDED name into the absolute path the loader would
// open: a name with a slash is taken as it is; otherwise the run path
// folders ($ORIGIN is the needing file's folder), then the default ones.
func (r Resolver) locate(lib string, runpath []string, origin string) (string, error) {
	if strings.Contains(lib, "/") {
		return lib, nil
	}
	var dirs []string
	for _, d := range runpath {
		dirs = append(dirs, strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin))
	}
	dirs = append(dirs, r.LibDirs...)
	for _, d := range dirs {
		t := path.Join(d, lib)
		if _, err := r.find(t); err == nil {
			return canonicalLibPath(t), nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ":"))
}

// canonicalLibPath maps the merged-/usr aliases (/lib → /usr/lib, /lib64 →
// /usr/lib64) onto one spelling, so a library that two programs find by
// different folders is copied once.
func canonicalLibPath(p string) string {
	for _, alias := range []string{"/lib/", "/lib64/"} {
		if strings.HasPrefix(p, alias) {
			return "/usr" + p
		}
	}
	return p
}

func (r Resolver) roots() []string {
	if len(r.Roots) == 0 {
		return []string{"/"}
	}
	return r.Roots
}

// resolveIn follows symlinks of target component by component as if root
// were "/", and answers the host path of the final file.
func resolveIn(root, target string) (string, error) {
	if root == "" {
		root = "/"
	}
	parts := strings.Split(strings.Trim(path.Clean("/"+target), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many symlinks", target)
		}
		link, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(link) {
			link = path.Join(cur, link)
		}
		rest := strings.Trim(path.Clean(link), "/")
		cur = "/"
		if rest != "" {
			parts = append(strings.Split(rest, "/"), parts...)
		}
	}
	return filepath.Join(root, cur), nil
}

// readDynamic reads a file's DT_NEEDED entries, its PT_INTERP and its run
// path (DT_RUNPATH, else DT_RPATH). A static program has none of them.
func readDynamic(file string) (needed []string, interp string, runpath []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, "", nil, fmt.Errorf("while reading %s as ELF: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, "", nil, fmt.Errorf("while reading the interpreter of %s: %w", file, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, "", nil, fmt.Errorf("while reading the libraries %s needs: %w", file, err)
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil || len(vals) == 0 {
			continue
		}
		for _, v := range vals {
			runpath = append(runpath, strings.Split(v, ":")...)
		}
		break
	}
	return needed, interp, runpath, nil
}
