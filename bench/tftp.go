package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// bootFiles is where Debian's ipxe package puts the files both servers serve.
const bootFiles = "/usr/lib/ipxe"

// tftpRate runs clients concurrent fetch loops of file for d and returns MiB/s.
func tftpRate(ns string, server *net.UDPAddr, file string, clients, blksize, window int, d time.Duration) (float64, error) {
	var bytes atomic.Int64
	var firstErr error
	var once sync.Once
	err := func() error {
		deadline := time.Now().Add(d)
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					n, err := tftpGet(ns, server, file, blksize, window)
					if err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					bytes.Add(int64(n))
				}
			}()
		}
		wg.Wait()
		d = time.Since(start)
		return nil
	}()
	if err != nil {
		return 0, err
	}
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(bytes.Load()) / (1 << 20) / d.Seconds(), nil
}

// benchTFTP measures ipxe.efi transfers from Racker's TFTP and dnsmasq's.
func benchTFTP(r *results, n *benchNet, work, racker string, short bool) error {
	file := "ipxe.efi"
	if _, err := os.Stat(filepath.Join(bootFiles, file)); err != nil {
		return fmt.Errorf("%s: %w (make deps installs the ipxe package)", file, err)
	}
	clients, d := []int{1, 10, 50}, 4*time.Second
	if short {
		clients, d = []int{1, 10}, time.Second
	}
	addr := &net.UDPAddr{IP: n.srvAddr.Addr().AsSlice(), Port: 69}
	type key struct{ clients, blksize, window int }
	measure := func(s *server) (map[key]float64, error) {
		defer s.stop()
		out := map[key]float64{}
		if err := waitTFTP(n.cliNS, addr, file, s); err != nil {
			return nil, err
		}
		for _, bs := range []int{512, 1432} {
			for _, c := range clients {
				v, err := tftpRate(n.cliNS, addr, file, c, bs, 1, d)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				out[key{c, bs, 1}] = v
			}
		}
		v, err := tftpRate(n.cliNS, addr, file, 1, 1432, 16, d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		out[key{1, 1432, 16}] = v
		return out, nil
	}
	oem, state := filepath.Join(work, "oem"), filepath.Join(work, "state")
	if _, err := rackFiles(oem, 3, n.srvMAC); err != nil {
		return err
	}
	rs, err := startServer("racker", n.srvNS, filepath.Join(work, "racker-serve.log"), rackerServeArgs(racker, oem, state, testosDir, n)...)
	if err != nil {
		return err
	}
	rk, err := measure(rs)
	if err != nil {
		return err
	}
	ds, err := startServer("dnsmasq", n.srvNS, filepath.Join(work, "dnsmasq.log"), "dnsmasq", "--keep-in-foreground",
		"--conf-file=/dev/null", "--port=0", "--interface="+n.srvIf, "--bind-interfaces", "--enable-tftp",
		"--tftp-root="+bootFiles, "--log-facility=-", "--pid-file="+filepath.Join(work, "dnsmasq.pid"), "--user=root")
	if err != nil {
		return err
	}
	dm, err := measure(ds)
	if err != nil {
		return err
	}
	sec := "TFTP ipxe.efi"
	for _, bs := range []int{512, 1432} {
		for _, c := range clients {
			k := key{c, bs, 1}
			r.add(row{Section: sec, Figure: fmt.Sprintf("%d client(s), blksize %d", c, bs), Unit: "MiB/s", Racker: rk[k], Peer: dm[k], PeerIs: "dnsmasq", HigherIsBetter: true})
		}
	}
	k := key{1, 1432, 16}
	r.add(row{Section: sec, Figure: "1 client, blksize 1432, windowsize 16", Unit: "MiB/s", Racker: rk[k], Peer: dm[k], PeerIs: "dnsmasq", HigherIsBetter: true, Note: "RFC 7440 where the server offers it"})
	r.add(row{Section: sec, Figure: "speed-up of windowsize 16 over 1", Unit: "×", Racker: rk[k] / rk[key{1, 1432, 1}], Peer: dm[k] / dm[key{1, 1432, 1}], PeerIs: "dnsmasq", HigherIsBetter: true})
	return nil
}

// waitTFTP waits until the server sends a file, at most 20 s.
func waitTFTP(ns string, addr *net.UDPAddr, file string, s *server) error {
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, last = tftpGet(ns, addr, file, 1432, 1)
		if last == nil {
			return nil
		}
	}
	b, _ := os.ReadFile(s.log)
	return fmt.Errorf("%s never served %s over TFTP (%v); its log:\n%s", s.name, file, last, b)
}
