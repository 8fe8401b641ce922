package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/racker/racker/netenv"
)

const imageName = "flatcar_production_image.bin.bz2"

// clientIn returns an HTTP client whose connections are made inside ns.
func clientIn(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netenv.Do(ns, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// httpRate runs clients concurrent download loops for d; with rangeSize > 0
// each request asks for a random range of that size and checks its bytes.
func httpRate(c *http.Client, url string, want []byte, clients, rangeSize int, d time.Duration) (float64, error) {
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				n, err := fetch(c, url, want, rangeSize)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				total.Add(n)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total.Load()) / (1 << 20) / time.Since(start).Seconds(), nil
}

func fetch(c *http.Client, url string, want []byte, rangeSize int) (int64, error) {
	req, _ := http.NewRequest("GET", url, nil)
	off := 0
	if rangeSize > 0 {
		r, _ := rand.Int(rand.Reader, big.NewInt(int64(len(want)-rangeSize)))
		off = int(r.Int64())
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+rangeSize-1))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if rangeSize > 0 {
		if resp.StatusCode != http.StatusPartialContent {
			return 0, fmt.Errorf("range request: %s", resp.Status)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(got, want[off:off+rangeSize]) {
			return 0, fmt.Errorf("range %d+%d: wrong bytes", off, rangeSize)
		}
		return int64(len(got)), nil
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET: %s", resp.Status)
	}
	return io.Copy(io.Discard, resp.Body)
}

// peakRSS reads a process's peak resident memory in MiB (VmHWM).
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// benchHTTP measures OS image downloads from Racker's boot services against
// the veth's own limit: a minimal Go server answering from memory.
func benchHTTP(r *results, n *benchNet, work, racker string, short bool) error {
	size, d := 500<<20, 5*time.Second
	if short {
		size, d = 100<<20, 2*time.Second
	}
	// A release folder like the test OS's, with an image of the size users serve.
	rel := filepath.Join(work, "testos", "current")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"} {
		b, err := os.ReadFile(filepath.Join(testosDir, "current", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(rel, f), b, 0o644); err != nil {
			return err
		}
	}
	image := make([]byte, size)
	rand.Read(image)
	if err := os.WriteFile(filepath.Join(rel, imageName), image, 0o644); err != nil {
		return err
	}
	if err := signRelease(rel, imageName); err != nil {
		return err
	}

	oem, state := filepath.Join(work, "oem"), filepath.Join(work, "state")
	if _, err := rackFiles(oem, 3, n.srvMAC); err != nil {
		return err
	}
	rs, err := startServer("racker", n.srvNS, filepath.Join(work, "racker-serve.log"),
		rackerServeArgs(racker, oem, state, filepath.Join(work, "testos"), n)...)
	if err != nil {
		return err
	}
	defer rs.stop()
	c := clientIn(n.cliNS)
	base := fmt.Sprintf("http://%s:8080", n.srvAddr.Addr())
	if err := waitHTTP(c, base+"/healthz", rs); err != nil {
		return err
	}
	rackerURL := base + "/assets/testos/" + benchVersion + "/" + imageName

	// The reference: the same bytes from memory, in the same namespace.
	var ln net.Listener
	if err := netenv.Do(n.srvNS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(n.srvAddr.Addr().String(), "8081"))
		return err
	}); err != nil {
		return err
	}
	ref := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.ServeContent(w, req, imageName, time.Time{}, bytes.NewReader(image))
	})}
	go ref.Serve(ln)
	defer ref.Close()
	refURL := fmt.Sprintf("http://%s:8081/%s", n.srvAddr.Addr(), imageName)

	sec := fmt.Sprintf("HTTP image, %d MB", size>>20)
	cases := []struct {
		name             string
		clients, rangeSz int
	}{{"1 client", 1, 0}, {"20 clients", 20, 0}, {"20 clients, 8 MiB Range requests", 20, 8 << 20}}
	for _, cs := range cases {
		a, err := httpRate(c, rackerURL, image, cs.clients, cs.rangeSz, d)
		if err != nil {
			return fmt.Errorf("racker: %s: %w", cs.name, err)
		}
		b, err := httpRate(c, refURL, image, cs.clients, cs.rangeSz, d)
		if err != nil {
			return fmt.Errorf("reference: %s: %w", cs.name, err)
		}
		r.add(row{Section: sec, Figure: cs.name, Unit: "MiB/s", Racker: a, Peer: b, PeerIs: "Go server from memory", HigherIsBetter: true})
	}
	r.add(row{Section: sec, Figure: "peak memory of racker serve", Unit: "MiB", Racker: peakRSS(rs.pid()), Peer: float64(size >> 20), PeerIs: "image size",
		Note: "the reference holds the image in memory"})
	return nil
}

func waitHTTP(c *http.Client, url string, s *server) error {
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		last = err
	}
	b, _ := os.ReadFile(s.log)
	return fmt.Errorf("%s never answered %s (%v); its log:\n%s", s.name, url, last, b)
}
