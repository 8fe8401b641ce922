package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/racker/racker/netenv"
)

const imageName = "flatcar_production_image.bin.bz2"

// clientIn returns an HTTP client whose connections are made inside ns.
func clientIn(ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: dialIn(ns), MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// dialIn dials from inside ns.
// dialFrom is dialIn with each new connection from the next address of
// from, as a rack's nodes each fetch from their own.
func dialFrom(ns string, from []netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if len(from) == 0 {
		return dialIn(ns)
	}
	var next atomic.Uint64
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		local := from[int(next.Add(1)-1)%len(from)]
		err = netenv.Do(ns, func() error {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice()}}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// httpClientAddrs are k client addresses at the top of the bench subnet,
// clear of the planned nodes: racker serve caps the connections one
// address holds (32), and in a rack every node fetches from its own.
func httpClientAddrs(k int) []netip.Addr {
	a := netip.MustParseAddr("10.77.14.1")
	var out []netip.Addr
	for range k {
		out = append(out, a)
		a = a.Next()
	}
	return out
}

func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netenv.Do(ns, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// httpCase is one load on the image server: clients downloading at once,
// whole images or random ranges of rangeSize bytes.
type httpCase struct {
	name             string
	clients, rangeSz int
}

// httpCases: one node installing; nodes resuming or fetching in parts; a
// small rack; a big rack all installing at once (issue 20).
var httpCases = []httpCase{
	{"1 client, whole image", 1, 0},
	{"20 clients, 8 MiB Range requests", 20, 8 << 20},
	{"20 clients, whole image", 20, 0},
	{"100 clients, whole image at once", 100, 0},
}

// httpRuns timed runs per server and case; the rows show their medians.
const httpRuns = 3

// imageServer is one of the two servers compared.
type imageServer struct {
	name, url string
	pid       int
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
// the veth's own limit: a minimal Go server answering from memory, in its
// own process on the same veth. For each case both servers get an untimed
// warm-up, then httpRuns timed runs each, alternating which goes first, so
// that neither pays alone for a cold start or for the machine getting busier.
func benchHTTP(r *results, n *benchNet, work, racker string, short bool) error {
	size, d := 500<<20, 4*time.Second
	if short {
		size, d = 100<<20, time.Second
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
	imagePath := filepath.Join(rel, imageName)
	// Synced, so that no writeback of it runs during the timed runs.
	if err := writeSynced(imagePath, image); err != nil {
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
	// Not 8080 (racker serve's HTTP) nor 8081 (its matchbox gRPC API).
	ref, err := startRefServer(n.srvNS, net.JoinHostPort(n.srvAddr.Addr().String(), refPort), imagePath, filepath.Join(work, "ref.log"))
	if err != nil {
		return err
	}
	defer ref.stop()
	refBase := fmt.Sprintf("http://%s:%s", n.srvAddr.Addr(), refPort)
	if err := waitHTTP(c, refBase+"/healthz", ref); err != nil {
		return err
	}
	servers := [2]imageServer{
		{"racker", base + "/assets/testos/" + benchVersion + "/" + imageName, rs.pid()},
		{"reference", refBase + "/" + imageName, ref.pid()},
	}

	maxClients, maxRange := 0, 0
	for _, cs := range httpCases {
		maxClients, maxRange = max(maxClients, cs.clients), max(maxRange, cs.rangeSz)
	}
	from := httpClientAddrs(maxClients)
	removeAddrs, err := addClientAddrs(n, from)
	if err != nil {
		return err
	}
	defer removeAddrs()
	load := newHTTPLoad(n.cliNS, from, image, maxClients, maxRange)
	sec := fmt.Sprintf("HTTP image, %d MB", size>>20)
	for _, cs := range httpCases {
		var rate, cpu [2][]float64
		for i, s := range servers {
			if _, _, err := load.run(s.url, cs.clients, cs.rangeSz, d/4); err != nil {
				return fmt.Errorf("%s: %s (warm-up): %w", s.name, cs.name, err)
			}
			load.close()
			resetPeakRSSOf(servers[i].pid)
		}
		for run := range httpRuns {
			for k := range servers {
				i := (k + run) % len(servers)
				cpu0 := cpuSeconds(servers[i].pid)
				bytes, elapsed, err := load.run(servers[i].url, cs.clients, cs.rangeSz, d)
				load.close()
				if err != nil {
					return fmt.Errorf("%s: %s: %w", servers[i].name, cs.name, err)
				}
				gib := float64(bytes) / (1 << 30)
				rate[i] = append(rate[i], gib*1024/elapsed.Seconds())
				cpu[i] = append(cpu[i], (cpuSeconds(servers[i].pid)-cpu0)*1000/gib)
			}
		}
		r.add(row{Section: sec, Figure: cs.name, Unit: "MiB/s", Racker: median(rate[0]), Peer: median(rate[1]),
			PeerIs: "Go server from memory", HigherIsBetter: true, Note: spread(rate)})
		r.add(row{Section: sec, Figure: cs.name + ": server CPU per GiB", Unit: "ms", Racker: median(cpu[0]), Peer: median(cpu[1]),
			PeerIs: "Go server from memory", Note: spread(cpu)})
		r.add(row{Section: sec, Figure: cs.name + ": server peak RSS", Unit: "MiB", Racker: peakRSS(servers[0].pid), Peer: peakRSS(servers[1].pid),
			PeerIs: "Go server from memory", Note: "racker goal < 64 MiB"})
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// spread says how far the runs of racker and the reference were apart.
// refPort is the reference server's port, beside racker serve's.
const refPort = "8090"

func spread(v [2][]float64) string {
	return fmt.Sprintf("%d runs each: racker %.0f–%.0f, reference %.0f–%.0f", len(v[0]),
		slices.Min(v[0]), slices.Max(v[0]), slices.Min(v[1]), slices.Max(v[1]))
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
