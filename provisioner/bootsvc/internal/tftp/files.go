package tftp

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// A boot-files folder holds a handful of small files (undionly.kpxe is
// ~70 KB, ipxe.efi ~1 MB) that every machine of a rack fetches, so they
// are kept in memory: a block is then a slice of memory handed to the
// kernel, not a read(2) per block. Each request still stats the file
// (following the folder's own symlinks), and a file whose size, mtime or
// inode changed is read again, so replacing ipxe.efi takes effect on the
// next request. Files above cacheFileMax, or past cacheTotalMax in all, are
// read from disk per block instead.
const (
	cacheFileMax  = 16 << 20
	cacheTotalMax = 64 << 20
)

// fileCache holds the boot files in memory.
type fileCache struct {
	mu    sync.Mutex
	files map[string]*cachedFile
	total int64
}

type cachedFile struct {
	data  []byte
	mtime time.Time
	dev   uint64
	ino   uint64
}

// bootFile is one file opened for one transfer: its bytes in memory, or
// an open file for the rare big one. Close releases the latter.
type bootFile struct {
	size int64
	data []byte   // nil when the file is read from disk
	f    *os.File // set when data is nil
}

// reader is the file as an io.Reader for pin/tftp's own sender.
func (b *bootFile) reader() io.Reader {
	if b.data != nil {
		return &sliceReader{b: b.data}
	}
	return b.f
}

func (b *bootFile) Close() error {
	if b.f != nil {
		return b.f.Close()
	}
	return nil
}

// sliceReader is a bytes.Reader that pin/tftp sees as a plain reader
// (it only needs Read; the size is given with SetSize).
type sliceReader struct {
	b   []byte
	off int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// errNotRegular is what a folder, device or other non-file gets.
var errNotRegular = fmt.Errorf("not a regular file")

// open returns path's bytes, from memory when they are current.
func (c *fileCache) open(path string) (*bootFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	var dev, ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		dev, ino = sys.Dev, sys.Ino
	}
	c.mu.Lock()
	if cf, ok := c.files[path]; ok && int64(len(cf.data)) == st.Size() && cf.mtime.Equal(st.ModTime()) && cf.dev == dev && cf.ino == ino {
		c.mu.Unlock()
		return &bootFile{size: st.Size(), data: cf.data}, nil
	}
	c.mu.Unlock()
	if st.Size() > cacheFileMax {
		return openUncached(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != st.Size() {
		// Changed while read: serve what was read, keep nothing.
		return &bootFile{size: int64(len(data)), data: data}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]*cachedFile{}
	}
	if old, ok := c.files[path]; ok {
		c.total -= int64(len(old.data))
		delete(c.files, path)
	}
	if c.total+int64(len(data)) <= cacheTotalMax {
		c.files[path] = &cachedFile{data: data, mtime: st.ModTime(), dev: dev, ino: ino}
		c.total += int64(len(data))
	}
	return &bootFile{size: int64(len(data)), data: data}, nil
}

func openUncached(path string) (*bootFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errNotRegular
	}
	return &bootFile{size: st.Size(), f: f}, nil
}
