// Package kmod finds which kernel modules an initramfs must carry, and in
// which order to load them, from the modules' own .modinfo sections.
// Debian's kernel package ships no modules.dep (depmod makes it at install
// time, and kmod is not installed on the build machines), but every .ko
// names its dependencies in "depends=", which is all depmod reads too.
package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Index maps module names (underscores, as the kernel spells them) to their
// paths relative to the modules folder.
type Index map[string]string

// Scan indexes every .ko under dir (/lib/modules/VERSION).
func Scan(dir string) (Index, error) {
	idx := Index{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		idx[normalize(strings.TrimSuffix(d.Name(), ".ko"))] = rel
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("while indexing modules in %s: %w", dir, err)
	}
	return idx, nil
}

func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Depends reads a module's "depends=" list.
func Depends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("while opening module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("while reading .modinfo of %s: %w", path, err)
	}
	for _, field := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// LoadOrder answers the modules named (and everything they depend on),
// dependencies first, as paths relative to dir.
func LoadOrder(dir string, idx Index, names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = normalize(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " → "))
		}
		rel, ok := idx[name]
		if !ok {
			return fmt.Errorf("module %s not found (needed by %s)", name, strings.Join(chain, " → "))
		}
		state[name] = 1
		deps, err := Depends(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, []string{"(wanted)"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}
