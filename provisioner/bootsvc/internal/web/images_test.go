package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/images"
)

const imagePath = "/assets/testos/current/" + images.Image

// TestImageValidatorsAndConditionals checks what a node resuming or
// re-checking a download relies on: a strong ETag and Last-Modified,
// If-Range with either, If-None-Match, and a new ETag for a replaced image.
func TestImageValidatorsAndConditionals(t *testing.T) {
	r := newRig(t)
	want, _ := os.ReadFile(filepath.Join(r.release, images.Image))
	code, body, hdr := r.do(nil, "GET", imagePath, nil)
	tag, lastMod := hdr.Get("ETag"), hdr.Get("Last-Modified")
	if code != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET: %d, %d bytes", code, len(body))
	}
	if !regexp.MustCompile(`^"[0-9a-z]+-[0-9a-z]+-[0-9a-z]+"$`).MatchString(tag) || lastMod == "" {
		t.Fatalf("validators: ETag %q (want a strong one), Last-Modified %q", tag, lastMod)
	}
	if code, body, _ := r.do(nil, "GET", imagePath, nil, "If-None-Match", tag); code != 304 || len(body) != 0 {
		t.Errorf("If-None-Match with the current ETag: %d, %d bytes, want 304 and none", code, len(body))
	}
	if code, body, _ := r.do(nil, "HEAD", imagePath, nil, "If-None-Match", tag); code != 304 || len(body) != 0 {
		t.Errorf("HEAD If-None-Match: %d, %d bytes, want 304", code, len(body))
	}
	for _, ifRange := range []string{tag, lastMod} {
		code, body, hdr := r.do(nil, "GET", imagePath, nil, "Range", "bytes=4096-", "If-Range", ifRange)
		if code != 206 || !bytes.Equal(body, want[4096:]) || hdr.Get("Content-Range") != fmt.Sprintf("bytes 4096-%d/%d", len(want)-1, len(want)) {
			t.Errorf("resume with If-Range %s: %d, %d bytes, %q", ifRange, code, len(body), hdr.Get("Content-Range"))
		}
	}
	// A resume against another file must get the whole current one.
	code, body, _ = r.do(nil, "GET", imagePath, nil, "Range", "bytes=4096-", "If-Range", `"other"`)
	if code != 200 || !bytes.Equal(body, want) {
		t.Errorf("If-Range with a stale ETag: %d, %d bytes, want 200 and the whole file", code, len(body))
	}
	if code, _, hdr := r.do(nil, "GET", imagePath, nil, "Range", fmt.Sprintf("bytes=%d-", len(want))); code != 416 || hdr.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(want)) {
		t.Errorf("range past the end: %d %q, want 416", code, hdr.Get("Content-Range"))
	}
	code, _, hdr = r.do(nil, "HEAD", imagePath, nil, "Range", "bytes=0-99")
	if code != 206 || hdr.Get("Content-Length") != "100" || hdr.Get("ETag") != tag {
		t.Errorf("HEAD with a range: %d, length %q, ETag %q", code, hdr.Get("Content-Length"), hdr.Get("ETag"))
	}

	// The same name, new bytes (a new release written in place): new ETag.
	later := time.Now().Add(time.Hour)
	os.WriteFile(filepath.Join(r.release, images.Image), randomBytes(t, len(want)), 0o644)
	os.Chtimes(filepath.Join(r.release, images.Image), later, later)
	if _, _, hdr := r.do(nil, "GET", imagePath, nil); hdr.Get("ETag") == tag || hdr.Get("ETag") == "" {
		t.Errorf("ETag %q after the image changed, was %q", hdr.Get("ETag"), tag)
	}
}

// TestImageBytesCounted checks that bytes sent with sendfile, whole and in
// ranges, still reach the asset byte counter through countingWriter.
func TestImageBytesCounted(t *testing.T) {
	r := newRig(t)
	want, _ := os.ReadFile(filepath.Join(r.release, images.Image))
	r.do(nil, "GET", imagePath, nil)
	r.do(nil, "GET", imagePath, nil, "Range", "bytes=100-1123")
	r.do(nil, "HEAD", imagePath, nil)
	_, metrics := r.get("/metrics")
	m := regexp.MustCompile(`(?m)^racker_http_asset_bytes_total (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("no asset byte counter:\n%s", grepLines(metrics, "racker_http"))
	}
	if got, _ := strconv.ParseFloat(m[1], 64); got != float64(len(want)+1024) {
		t.Errorf("asset bytes %v, want %d (one whole image and a 1024-byte range)", got, len(want)+1024)
	}
}

// TestImageDownloadKeepsMemoryFlat downloads a 256 MiB image twice at once
// and checks that the process's peak RSS barely moves: the bytes go from
// the page cache to the socket, never through racker's memory.
func TestImageDownloadKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 512 MiB over loopback")
	}
	r := newRig(t)
	const size = 256 << 20
	path := filepath.Join(r.release, images.Image)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	block := randomBytes(t, 1<<20)
	for i := 0; i < size>>20; i++ {
		f.Write(block)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		testenv.Missing(t, "cannot reset the peak RSS (/proc/self/clear_refs): "+err.Error())
	}
	before := peakRSS(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(r.http.URL + imagePath)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n != size {
				err = fmt.Errorf("got %d bytes, want %d", n, size)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if grown := peakRSS(t) - before; grown > 32<<20 {
		t.Errorf("peak RSS grew by %d MiB serving two 256 MiB downloads; the image must not pass through memory", grown>>20)
	}
}

// TestKeepHotRefillsThePageCache evicts a release file from the page cache
// and checks that keepHot reads it back: at once, and on a later pass.
func TestKeepHotRefillsThePageCache(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, images.Image)
	if err := os.WriteFile(path, randomBytes(t, 24<<20+123), 0o644); err != nil {
		t.Fatal(err)
	}
	evict(t, path)
	h := keepHot([]string{path, filepath.Join(dir, "missing")}, 200*time.Millisecond, discard())
	defer h.Close()
	waitCached(t, path, "after start")
	evict(t, path)
	waitCached(t, path, "on a later pass")
	start := time.Now()
	h.Close()
	if time.Since(start) > time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
	if err := warm(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("warming a folder: %v, want a clear error", err)
	}
}

// evict drops path from the page cache, or skips where the file system
// cannot (tmpfs keeps its pages).
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Sync() // dirty pages cannot be dropped
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	if c, all := cached(t, path); c > all/2 {
		testenv.Missing(t, fmt.Sprintf("the file system of %s keeps %d of %d pages cached after FADV_DONTNEED (tmpfs?); set TMPDIR to a disk", path, c, all))
	}
}

func waitCached(t *testing.T, path, when string) {
	t.Helper()
	var c, all int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, all = cached(t, path); c == all {
			return
		}
	}
	t.Fatalf("%s: %d of %d pages of %s cached, want all", when, c, all, path)
}

// cached counts the pages of path in the page cache (mincore on a mapping
// that is never touched).
func cached(t *testing.T, path string) (n, all int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, len(vec)
}

func peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
