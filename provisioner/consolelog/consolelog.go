// Package consolelog keeps every node's serial console on disk while Racker
// provisions it, so a console nobody watched can be read after the fact
// (why did the install fail? what did the firmware print?), as conman
// does for ipmitool users.
//
// A Recorder attaches to each node's console (SOL, through the BMC) and
// appends what it prints to STATE/console/HOSTNAME.log; a File rotates at
// a size cap, keeping a few older files (HOSTNAME.log.1, …), so a node
// stuck in a boot loop cannot fill the disk. Lines the recorder adds
// itself start with "--- racker:" (connected, lost, taken over).
package consolelog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Dir is the console folder inside the state folder.
const Dir = "console"

// Defaults of a File: 1 MiB per file, 3 older files, 4 MiB per node.
const (
	DefaultMaxBytes = 1 << 20
	DefaultKeep     = 3
)

// Path is the log of the node named name in stateDir.
func Path(stateDir, name string) string {
	return filepath.Join(stateDir, Dir, FileName(name))
}

// FileName is the log file of a node: its name, with anything that is not
// safe in a file name replaced (a MAC's colons become dashes).
func FileName(name string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, name)
	if clean == "" || strings.Trim(clean, ".") == "" {
		clean = "node"
	}
	return clean + ".log"
}

// File is an append-only log that rotates: once a write would take it past
// MaxBytes, NAME.log becomes NAME.log.1 (NAME.log.1 becomes .2, …; the
// oldest beyond Keep is deleted) and a new NAME.log starts. Safe for
// concurrent use.
type File struct {
	path     string
	maxBytes int64
	keep     int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (appends to) the log at path, creating its folder.
// maxBytes <= 0 and keep < 0 take the defaults.
func Open(path string, maxBytes int64, keep int) (*File, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if keep < 0 {
		keep = DefaultKeep
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the console log folder: %w", err)
	}
	l := &File{path: path, maxBytes: maxBytes, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening the console log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening the console log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past the
// cap. A write larger than the cap is cut to its last MaxBytes.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, errors.New("console log closed")
	}
	n := len(p)
	if int64(len(p)) > l.maxBytes {
		p = p[int64(len(p))-l.maxBytes:]
	}
	if l.size > 0 && l.size+int64(len(p)) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	w, err := l.f.Write(p)
	l.size += int64(w)
	if err != nil {
		return 0, fmt.Errorf("writing the console log: %w", err)
	}
	return n, nil
}

func (l *File) rotate() error {
	l.f.Close()
	l.f = nil
	if l.keep == 0 {
		os.Remove(l.path)
	} else {
		os.Remove(fmt.Sprintf("%s.%d", l.path, l.keep))
		for i := l.keep - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
		}
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotating the console log: %w", err)
		}
	}
	return l.open()
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Tail returns the last n lines a node's console printed, from its log and
// the rotated ones before it as needed; "" when there is none.
func Tail(path string, n int) (string, error) {
	var chunks [][]byte
	lines := 0
	for i := 0; i <= 9 && lines <= n; i++ {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				continue
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading the console log: %w", err)
		}
		chunks = append([][]byte{b}, chunks...)
		lines += bytes.Count(b, []byte("\n"))
	}
	all := string(bytes.Join(chunks, nil))
	all = strings.TrimRight(strings.ReplaceAll(all, "\r\n", "\n"), "\n")
	if all == "" {
		return "", nil
	}
	ls := strings.Split(all, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n") + "\n", nil
}

// copyTo copies r into w until r ends; the error is r's (nil at EOF).
func copyTo(w io.Writer, r io.Reader) error {
	_, err := io.Copy(w, r)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}
