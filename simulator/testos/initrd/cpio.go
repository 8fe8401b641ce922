// Package initrd writes the test OS's initramfs: a gzip-compressed cpio
// ("newc") archive. Writing it in Go rather than with cpio(1) lets the
// archive hold /dev/console (the kernel opens it for /init's stdio before
// anything mounts devtmpfs) without root or mknod, and makes the output
// byte-for-byte reproducible (sorted entries, zero timestamps), so the build
// can tell when nothing changed.
package initrd

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// File types for Entry.Mode (the st_mode bits cpio stores).
const (
	TypeDir     = 0o040000
	TypeRegular = 0o100000
	TypeSymlink = 0o120000
	TypeCharDev = 0o020000
)

// Entry is one archive member. Path is relative ("usr/bin/curl").
type Entry struct {
	Path         string
	Mode         uint32 // type | permissions
	Data         []byte // file contents, or the symlink target
	Major, Minor uint32 // for device nodes
}

// Archive collects entries; parents are added as 0755 folders as needed.
type Archive struct {
	entries map[string]Entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// Add adds (or replaces) an entry and its missing parent folders.
func (a *Archive) Add(e Entry) {
	e.Path = strings.TrimPrefix(path.Clean("/"+e.Path), "/")
	for dir := path.Dir(e.Path); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = Entry{Path: dir, Mode: TypeDir | 0o755}
		}
	}
	a.entries[e.Path] = e
}

// Dir adds a folder.
func (a *Archive) Dir(p string, perm uint32) { a.Add(Entry{Path: p, Mode: TypeDir | perm}) }

// File adds a regular file.
func (a *Archive) File(p string, perm uint32, data []byte) {
	a.Add(Entry{Path: p, Mode: TypeRegular | perm, Data: data})
}

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(p, target string) {
	a.Add(Entry{Path: p, Mode: TypeSymlink | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node.
func (a *Archive) CharDev(p string, perm, major, minor uint32) {
	a.Add(Entry{Path: p, Mode: TypeCharDev | perm, Major: major, Minor: minor})
}

// Has says whether the archive holds p.
func (a *Archive) Has(p string) bool {
	_, ok := a.entries[strings.TrimPrefix(path.Clean("/"+p), "/")]
	return ok
}

// WriteTo writes the archive in newc format, sorted so folders come before
// their contents, with a TRAILER!!! entry.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := &countWriter{w: w}
	for i, n := range names {
		if err := writeEntry(cw, uint32(i+1), a.entries[n]); err != nil {
			return cw.n, fmt.Errorf("while writing %s: %w", n, err)
		}
	}
	if err := writeEntry(cw, 0, Entry{Path: "TRAILER!!!"}); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func writeEntry(w *countWriter, ino uint32, e Entry) error {
	nlink := uint32(1)
	if e.Mode&0o170000 == TypeDir {
		nlink = 2
	}
	name := e.Path + "\x00"
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.Major, e.Minor, len(name), 0)
	if _, err := io.WriteString(w, hdr+name); err != nil {
		return err
	}
	if err := w.pad(); err != nil {
		return err
	}
	if _, err := w.Write(e.Data); err != nil {
		return err
	}
	return w.pad()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pad aligns to 4 bytes, as newc requires after headers and data.
func (c *countWriter) pad() error {
	if r := c.n % 4; r != 0 {
		_, err := c.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
