package main

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// checkBlock is the unit in which whole downloads are checked: each block
// of the image has its CRC-32C computed up front, and every block a client
// receives is checked against it before it counts, so a download cut off
// at the end of a run is checked as far as it went.
const checkBlock = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// httpLoad downloads the OS image from a server with many clients at once
// and checks every byte it counts: whole downloads block by block against
// CRC-32C sums, ranges byte for byte against the image. The clients cost
// the same whoever serves, and as little as possible, so that the figures
// are the server's: buffers are allocated and touched once, before any
// timing (fresh memory costs page faults that would land on whichever
// server runs first), and nothing is allocated per request.
type httpLoad struct {
	image []byte
	sums  []uint32 // CRC-32C of each checkBlock of image
	bufs  [][]byte // one per client
	c     *http.Client
}

// Its connections come from the addresses in from, in turn (none: the
// namespace's own).
func newHTTPLoad(ns string, from []netip.Addr, image []byte, clients, rangeSize int) *httpLoad {
	l := &httpLoad{image: image}
	for off := 0; off < len(image); off += checkBlock {
		l.sums = append(l.sums, crc32.Checksum(image[off:min(off+checkBlock, len(image))], castagnoli))
	}
	for range clients {
		b := make([]byte, max(rangeSize, checkBlock))
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		l.bufs = append(l.bufs, b)
	}
	l.c = &http.Client{Transport: &http.Transport{DialContext: dialFrom(ns, from), MaxIdleConnsPerHost: clients, DisableCompression: true}}
	return l
}

// close drops the load's idle connections, so a server's next run starts
// from new ones as the other server's did.
func (l *httpLoad) close() { l.c.CloseIdleConnections() }

// run has clients download from url at once for d, each starting a new
// download when one ends (whole image, or a random range of rangeSize),
// and returns the bytes received and checked, and the time it took (the
// clients stop at d, but finish the block or range in hand).
func (l *httpLoad) run(url string, clients, rangeSize int, d time.Duration) (int64, time.Duration, error) {
	var total atomic.Int64
	errs := make(chan error, clients)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				var err error
				if rangeSize > 0 {
					err = l.fetchRange(url, l.bufs[i][:rangeSize], &total)
				} else {
					err = l.fetchWhole(url, l.bufs[i][:checkBlock], deadline, &total)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	if total.Load() == 0 {
		return 0, 0, fmt.Errorf("no bytes from %s in %v", url, d)
	}
	return total.Load(), elapsed, nil
}

// fetchWhole downloads the image, checking and counting block by block,
// and stops at the deadline even in the middle of the image.
func (l *httpLoad) fetchWhole(url string, buf []byte, deadline time.Time, total *atomic.Int64) error {
	resp, err := l.c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(l.image)) {
		return fmt.Errorf("GET %s: %s, %d bytes, want 200 and %d", url, resp.Status, resp.ContentLength, len(l.image))
	}
	for i, off := 0, 0; off < len(l.image); i, off = i+1, off+checkBlock {
		b := buf[:min(checkBlock, len(l.image)-off)]
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return fmt.Errorf("GET %s: at byte %d: %w", url, off, err)
		}
		if crc32.Checksum(b, castagnoli) != l.sums[i] {
			return fmt.Errorf("GET %s: wrong bytes in %d..%d (CRC-32C differs)", url, off, off+len(b))
		}
		total.Add(int64(len(b)))
		if !time.Now().Before(deadline) {
			return nil // the run is over: drop the rest (closes the connection)
		}
	}
	if n, _ := resp.Body.Read(buf[:1]); n != 0 {
		return fmt.Errorf("GET %s: bytes after the image's end", url)
	}
	return nil
}

// fetchRange downloads one random range of len(buf) bytes and compares it
// with the image.
func (l *httpLoad) fetchRange(url string, buf []byte, total *atomic.Int64) error {
	off := rand.IntN(len(l.image) - len(buf) + 1)
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", "bytes="+strconv.Itoa(off)+"-"+strconv.Itoa(off+len(buf)-1))
	resp, err := l.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || resp.ContentLength != int64(len(buf)) {
		return fmt.Errorf("range %d+%d of %s: %s, %d bytes", off, len(buf), url, resp.Status, resp.ContentLength)
	}
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		return fmt.Errorf("range %d+%d of %s: %w", off, len(buf), url, err)
	}
	if !bytes.Equal(buf, l.image[off:off+len(buf)]) {
		return fmt.Errorf("range %d+%d of %s: wrong bytes", off, len(buf), url)
	}
	total.Add(int64(len(buf)))
	return nil
}
