package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// bootFiles is where Debian's ipxe package puts the files both servers serve.
const bootFiles = "/usr/lib/ipxe"

// tftpLoad is one measurement: clients fetching in a loop for a while.
type tftpLoad struct {
	rate     float64 // MiB/s
	blocks   int
	timeouts int // client waits that ended in a re-ACK
	lost     int // transfers given up (tftpTries timeouts in a row)
	cost     perfCost
}

// tftpRate runs clients concurrent fetch loops of file for d. A lost
// transfer is counted and its client starts the next one, as a PXE ROM
// retries a boot; the bench fails only when most transfers are lost.
func tftpRate(ns string, server *net.UDPAddr, file string, clients, blksize, window int, d time.Duration) (tftpLoad, error) {
	var (
		mu    sync.Mutex
		out   tftpLoad
		bytes int64
		done  int
		first error
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				st, err := tftpFetch(ns, server, file, blksize, window, nil)
				mu.Lock()
				bytes += int64(st.bytes)
				out.blocks += st.blocks
				out.timeouts += st.timeouts
				if err != nil {
					out.lost++
					if first == nil {
						first = err
					}
				} else {
					done++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if out.lost > done {
		return out, fmt.Errorf("%d of %d transfers lost, the first: %w", out.lost, out.lost+done, first)
	}
	out.rate = float64(bytes) / (1 << 20) / time.Since(start).Seconds()
	return out, nil
}

// tftpCase is one line of the TFTP table.
type tftpCase struct{ clients, blksize, window int }

func (c tftpCase) String() string {
	s := fmt.Sprintf("%d client(s), blksize %d", c.clients, c.blksize)
	if c.window > 1 {
		s += fmt.Sprintf(", windowsize %d", c.window)
	}
	return s
}

// tftpRuns is how often each server is measured; rows are medians.
const tftpRuns = 3

// benchTFTP measures ipxe.efi transfers from Racker's TFTP and dnsmasq's,
// lockstep (one block per ACK, what every PXE ROM does) at two block sizes
// and three client counts, then RFC 7440 windowsize, which dnsmasq does not
// implement. Each server runs tftpRuns times, alternating, and each row is
// the median; the servers' own CPU time and system calls per block are
// counted with perf over the same windows.
func benchTFTP(r *results, n *benchNet, work, racker string, short bool) error {
	file := "ipxe.efi"
	if _, err := os.Stat(filepath.Join(bootFiles, file)); err != nil {
		return fmt.Errorf("%s: %w (make deps installs the ipxe package)", file, err)
	}
	clients, d := []int{1, 10, 50}, 3*time.Second
	if short {
		clients, d = []int{1, 10}, time.Second
	}
	var cases []tftpCase
	for _, bs := range []int{512, 1432} {
		for _, c := range clients {
			cases = append(cases, tftpCase{c, bs, 1})
		}
	}
	windowed := []tftpCase{{1, 1432, 16}, {10, 1432, 16}}
	cases = append(cases, windowed...)
	addr := &net.UDPAddr{IP: n.srvAddr.Addr().AsSlice(), Port: 69}
	oem, state := filepath.Join(work, "oem"), filepath.Join(work, "state")
	if _, err := rackFiles(oem, 3, n.srvMAC); err != nil {
		return err
	}
	start := map[string]func(run int) (*server, error){
		"racker": func(run int) (*server, error) {
			return startServer("racker", n.srvNS, filepath.Join(work, fmt.Sprintf("racker-serve-%d.log", run)),
				rackerServeArgs(racker, oem, state, testosDir, n)...)
		},
		"dnsmasq": func(run int) (*server, error) {
			return startServer("dnsmasq", n.srvNS, filepath.Join(work, fmt.Sprintf("dnsmasq-%d.log", run)), "dnsmasq", "--keep-in-foreground",
				"--conf-file=/dev/null", "--port=0", "--interface="+n.srvIf, "--bind-interfaces", "--enable-tftp",
				"--tftp-root="+bootFiles, "--log-facility=-", "--pid-file="+filepath.Join(work, "dnsmasq.pid"), "--user=root")
		},
	}
	got := map[string]map[tftpCase][]tftpLoad{"racker": {}, "dnsmasq": {}}
	runs := tftpRuns
	if short {
		runs = 1
	}
	if benchRuns > 0 {
		runs = benchRuns
	}
	for run := range runs {
		for _, name := range []string{"racker", "dnsmasq"} {
			s, err := start[name](run)
			if err != nil {
				return err
			}
			err = func() error {
				defer s.stop()
				if err := waitTFTP(n.cliNS, addr, file, s); err != nil {
					return err
				}
				for _, c := range cases {
					var prof *perfProfile
					if run == 0 && c.window == 1 {
						prof = recordProfile(s.pid(), fmt.Sprintf("tftp-%s-c%d-bs%d", name, c.clients, c.blksize))
					}
					cnt := countCosts(s.pid(), work)
					l, err := tftpRate(n.cliNS, addr, file, c.clients, c.blksize, c.window, d)
					l.cost = cnt.stop()
					if prof != nil {
						prof.stop()
					}
					if err != nil {
						return fmt.Errorf("%s, %s: %w", name, c, err)
					}
					cpu, sys, _ := l.cost.per(float64(l.blocks))
					logger.Info("tftp", "server", name, "run", run+1, "case", c.String(), "MiB/s", fmt.Sprintf("%.1f", l.rate),
						"timeouts", l.timeouts, "lost", l.lost, "cpu_us_per_block", fmt.Sprintf("%.1f", cpu), "syscalls_per_block", fmt.Sprintf("%.2f", sys))
					got[name][c] = append(got[name][c], l)
				}
				return nil
			}()
			if err != nil {
				return err
			}
		}
	}

	sec := "TFTP ipxe.efi, one block per ACK (what PXE ROMs do)"
	note := fmt.Sprintf("median of %d runs", runs)
	for _, c := range cases[:len(cases)-len(windowed)] {
		rk, dm := got["racker"][c], got["dnsmasq"][c]
		r.add(row{Section: sec, Figure: c.String(), Unit: "MiB/s", Racker: medianOf(rk, rate), Peer: medianOf(dm, rate),
			RackerRuns: all(rk, rate), PeerRuns: all(dm, rate), PeerIs: "dnsmasq", HigherIsBetter: true,
			Headline: c.blksize == 1432 && (c.clients == 1 || c.clients == clients[len(clients)-1]), Note: note + lossNote(rk, dm)})
	}
	// What each server spends per block, from perf over the same windows:
	// the part of the comparison a busy machine does not move.
	sec = "TFTP server cost per block (perf, same windows)"
	for _, c := range cases[:len(cases)-len(windowed)] {
		rk, dm := got["racker"][c], got["dnsmasq"][c]
		if rk[0].cost.Missing != "" {
			break
		}
		r.add(row{Section: sec, Figure: "CPU per block, " + c.String(), Unit: "µs", Racker: medianOf(rk, cpuPerBlock), Peer: medianOf(dm, cpuPerBlock),
			PeerIs: "dnsmasq", Note: note})
		r.add(row{Section: sec, Figure: "system calls per block, " + c.String(), Unit: "", Racker: medianOf(rk, sysPerBlock), Peer: medianOf(dm, sysPerBlock),
			PeerIs: "dnsmasq", Note: note, Decimals: 2, Headline: c.blksize == 1432 && c.clients == clients[len(clients)-1]})
	}
	sec = "TFTP ipxe.efi, RFC 7440 windowsize (Racker offers it; dnsmasq does not, so its figure is one block per ACK)"
	for _, c := range windowed {
		rk, dm := got["racker"][c], got["dnsmasq"][c]
		lock := tftpCase{c.clients, c.blksize, 1}
		r.add(row{Section: sec, Figure: c.String(), Unit: "MiB/s", Racker: medianOf(rk, rate), Peer: medianOf(dm, rate),
			RackerRuns: all(rk, rate), PeerRuns: all(dm, rate), PeerIs: "dnsmasq (lockstep)", HigherIsBetter: true, Note: note + lossNote(rk, dm),
			Headline: c.clients == 1})
		if lk, ok := got["racker"][lock]; ok {
			r.add(row{Section: sec, Figure: "speed-up of windowsize over one block per ACK, " + fmt.Sprintf("%d client(s)", c.clients), Unit: "×",
				Racker: medianOf(rk, rate) / medianOf(lk, rate), Peer: medianOf(dm, rate) / medianOf(got["dnsmasq"][lock], rate),
				PeerIs: "dnsmasq", HigherIsBetter: true, Note: "like for like: each server against its own lockstep figure"})
		}
	}
	return nil
}

func rate(l tftpLoad) float64        { return l.rate }
func cpuPerBlock(l tftpLoad) float64 { c, _, _ := l.cost.per(float64(l.blocks)); return c }
func sysPerBlock(l tftpLoad) float64 { _, s, _ := l.cost.per(float64(l.blocks)); return s }

func all(ls []tftpLoad, f func(tftpLoad) float64) []float64 {
	var out []float64
	for _, l := range ls {
		out = append(out, f(l))
	}
	return out
}

func medianOf(ls []tftpLoad, f func(tftpLoad) float64) float64 { return median(all(ls, f)) }

// median of vs (the mean of the middle two for an even count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// lossNote reports client timeouts and lost transfers of both servers,
// when there were any.
func lossNote(rk, dm []tftpLoad) string {
	sum := func(ls []tftpLoad) (t, l int) {
		for _, x := range ls {
			t += x.timeouts
			l += x.lost
		}
		return
	}
	rt, rl := sum(rk)
	dt, dl := sum(dm)
	if rt+rl+dt+dl == 0 {
		return ""
	}
	return fmt.Sprintf("; 1 s client timeouts racker %d, dnsmasq %d; transfers lost (4 timeouts in a row) racker %d, dnsmasq %d", rt, dt, rl, dl)
}

// waitTFTP waits until the server sends a file, at most 20 s, and checks
// that the bytes are the file's, lockstep and windowed, at both block
// sizes: a fast server that sends wrong bytes measures nothing.
func waitTFTP(ns string, addr *net.UDPAddr, file string, s *server) error {
	want, err := os.ReadFile(filepath.Join(bootFiles, file))
	if err != nil {
		return err
	}
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, last = tftpGet(ns, addr, file, 1432, 1)
		if last == nil {
			break
		}
	}
	if last != nil {
		b, _ := os.ReadFile(s.log)
		return fmt.Errorf("%s never served %s over TFTP (%v); its log:\n%s", s.name, file, last, b)
	}
	for _, c := range []tftpCase{{1, 512, 1}, {1, 1432, 1}, {1, 1432, 16}} {
		var got bytes.Buffer
		if _, err := tftpFetch(ns, addr, file, c.blksize, c.window, &got); err != nil {
			return fmt.Errorf("%s, %s: %w", s.name, c, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			return fmt.Errorf("%s sent %d bytes that are not %s's %d (%s)", s.name, got.Len(), file, len(want), c)
		}
	}
	return nil
}
