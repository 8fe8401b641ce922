package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/images"
)

// How the OS image is served, and why (issue 20; measured on the 2-core CI
// machine, a 500 MB image over a veth, racker serve beside a Go server that
// answers from memory, both in their own process; make bench, HTTP section):
//
//   - sendfile(2) from the page cache is the cheapest copy path here: 0.2–0.4
//     ms of server CPU and 1–4 system calls per MiB, against 0.4–0.7 ms and
//     about 30 calls (32 KiB writes) for writes from memory, 0.3–0.5 ms for
//     pread+write, and over 1 ms for writes from an mmap'd image (page
//     faults; and every mapped page counts in RSS). splice through a 1 MiB
//     pipe measured the same as sendfile. http.ServeContent on the *os.File
//     reaches sendfile for whole files and single ranges alike (io.CopyN →
//     countingWriter.ReadFrom → TCPConn.ReadFrom), and Go hands the whole
//     remaining range to each call, so each one moves what the socket takes
//     (a median of 2.6–4 MiB): there is no chunking left to enlarge. Most of
//     the CPU is TCP and the veth itself; the counting writer costs nothing.
//   - Socket buffers stay with the kernel's autotuning (tcp_wmem up to
//     4 MiB): a fixed SO_SNDBUF of 256 KiB–4 MiB measured no better and
//     would switch autotuning off.
//   - Nothing of a file is read into the process, so RSS does not grow with
//     the image size or the number of clients (19–26 MiB with 1–100 clients).
//   - What does matter is that the image is in the page cache: a page
//     missing there turns a download into disk reads. keepHot sees to it.

// serveFile answers a GET or HEAD for an open regular file. Range, If-Range,
// If-None-Match, If-Modified-Since, HEAD and Last-Modified are
// http.ServeContent's; the ETag added here lets a node that resumes a
// download with If-Range be sure it gets the rest of the same file.
func serveFile(w http.ResponseWriter, r *http.Request, f *os.File, st os.FileInfo) {
	w.Header().Set("ETag", etag(st))
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

// etag is a strong validator built from the file's identity (inode), size
// and modification time: a file rewritten or replaced gets a new one.
func etag(st os.FileInfo) string {
	var ino uint64
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = s.Ino
	}
	return `"` + strconv.FormatUint(ino, 36) + "-" + strconv.FormatInt(st.Size(), 36) + "-" +
		strconv.FormatInt(st.ModTime().UnixNano(), 36) + `"`
}

// hotInterval is how often keepHot looks after the release's files. The
// kernel drops the page cache of a file nobody read for a while: under
// memory pressure anywhere, and on the CI machines a DAMON pageout scheme
// (min age 60 s) evicts unmapped file pages, so an image left idle for a
// minute or two is read from disk again by the next node. A pass over
// pages that are cached costs a lookup only (about 2 ms for 500 MB).
const hotInterval = 30 * time.Second

// warmStep is how much each posix_fadvise(WILLNEED) call asks for: the
// kernel reads a large request only in part, so a big image is walked in
// steps (500 MB cold: fully cached within about a second, 0.1–0.2 s CPU).
const warmStep = 8 << 20

// hotFiles keeps a few files in the page cache (the OS release a rack
// installs) without holding any of their bytes in the process: no mmap, no
// copy, so racker's RSS stays flat. It asks the kernel to read what is not
// cached at start and every interval until Close.
type hotFiles struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// keepHot starts keeping paths in the page cache; a missing or unreadable
// file is logged and tried again on the next pass.
func keepHot(paths []string, interval time.Duration, log *slog.Logger) *hotFiles {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hotFiles{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			for _, p := range paths {
				if ctx.Err() != nil {
					return
				}
				if err := warm(ctx, p); err != nil && !errors.Is(err, context.Canceled) {
					lvl := slog.LevelWarn
					if errors.Is(err, os.ErrNotExist) {
						lvl = slog.LevelDebug // a release may list files it does not ship
					}
					log.Log(ctx, lvl, "could not keep an OS file in the page cache", "path", p, "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// Close stops keeping the files hot and waits for a pass in progress.
func (h *hotFiles) Close() {
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
}

// warm asks the kernel to read every page of path that is not in the page
// cache (asynchronously: it returns once the reads are queued).
func warm(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("while reading the size of %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	for off := int64(0); off < st.Size(); off += warmStep {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := unix.Fadvise(int(f.Fd()), off, warmStep, unix.FADV_WILLNEED); err != nil {
			return fmt.Errorf("while asking the kernel to cache %s at %d: %w", path, off, err)
		}
	}
	return nil
}

// releasePaths are the files of rel that nodes download.
func releasePaths(rel *images.Release) []string {
	if rel == nil {
		return nil
	}
	var paths []string
	for _, f := range rel.Files {
		paths = append(paths, filepath.Join(rel.Dir, f))
	}
	return paths
}
