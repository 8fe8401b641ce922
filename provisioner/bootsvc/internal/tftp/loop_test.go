package tftp

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The event-loop sender against real clients on loopback: busybox tftp (a
// client PXE setups use), pin/tftp's client, and this package's RFC 7440
// client (window_test.go).

func TestBusyboxFetchesByteForByte(t *testing.T) {
	bb := testenv.RequireCommand(t, "busybox")
	root := t.TempDir()
	want := randomFile(t, root, "ipxe.efi", 850_528) // Debian's ipxe.efi size
	events := make(chan api.Event, 10)
	addr := serve(t, root, api.RecorderFunc(func(e api.Event) { events <- e }))
	host, port, _ := net.SplitHostPort(addr)
	for _, blk := range []string{"", "512", "1432", "8192"} {
		dst := filepath.Join(t.TempDir(), "got")
		args := []string{"tftp", "-g", "-r", "ipxe.efi", "-l", dst}
		if blk != "" {
			args = append(args, "-b", blk)
		}
		if out, err := exec.Command(bb, append(args, host, port)...).CombinedOutput(); err != nil {
			t.Fatalf("busybox tftp -b %q: %v: %s", blk, err, out)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("busybox tftp -b %q: %d bytes, want the file's %d (%v)", blk, len(got), len(want), err)
		}
		select {
		case e := <-events:
			if e.Message != "ipxe.efi 850528 bytes" {
				t.Errorf("event %+v", e)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("busybox tftp -b %q: no event", blk)
		}
	}
}

// Fifty clients at once, lockstep and windowed, every byte right: the
// loop keeps each transfer's state apart.
func TestManyConcurrentTransfers(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "ipxe.efi", 200_003)
	addr := serve(t, root, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got []byte
			var err error
			switch i % 3 {
			case 0:
				got, _, err = fetch(t, addr, "ipxe.efi", 512)
			case 1:
				got, _, err = fetch(t, addr, "ipxe.efi", 1432)
			default:
				var res fetchResult
				res, err = windowClient{blksize: 1432, window: 16}.get(t, addr, "ipxe.efi")
				got = res.data
			}
			if err == nil && !bytes.Equal(got, want) {
				err = &mismatch{i, len(got)}
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

type mismatch struct{ client, n int }

func (m *mismatch) Error() string {
	return "client " + strconv.Itoa(m.client) + " got " + strconv.Itoa(m.n) + " wrong bytes"
}

// A file replaced in the folder is served new at the next request (the
// cache checks size, mtime and inode), and a file too big for the cache
// is read from disk per block.
func TestReplacedAndBigFiles(t *testing.T) {
	root := t.TempDir()
	first := randomFile(t, root, "ipxe.efi", 10_000)
	addr := serve(t, root, nil)
	if got, _, err := fetch(t, addr, "ipxe.efi", 1432); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("first fetch: %v", err)
	}
	// Replaced the way a package upgrade does: a new file renamed over it.
	second := make([]byte, 10_000)
	copy(second, first)
	second[5000] ^= 0xff
	tmp := filepath.Join(root, ".new")
	os.WriteFile(tmp, second, 0o644)
	os.Rename(tmp, filepath.Join(root, "ipxe.efi"))
	if got, _, err := fetch(t, addr, "ipxe.efi", 1432); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after the file was replaced the old bytes were served (%v)", err)
	}

	big := randomFile(t, root, "big.img", cacheFileMax+12345)
	res, err := windowClient{blksize: 1432, window: 32}.get(t, addr, "big.img")
	if err != nil || !bytes.Equal(res.data, big) {
		t.Fatalf("a file past the cache limit: %d bytes, %v", len(res.data), err)
	}
}

// RFC 1350: packets from another port than the client's are not the
// transfer's and must not disturb it; a client that goes away (ICMP port
// unreachable on the connected socket) ends its transfer at the first
// resend, not after every retry.
func TestStrangersAndVanishedClients(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "f", 100_000)
	metrics := api.NewMetrics()
	const timeout = 500 * time.Millisecond
	addr := serveWith(t, Config{Root: root, Metrics: metrics, Timeout: timeout})
	server, _ := net.ResolveUDPAddr("udp4", addr)

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	client.WriteToUDP([]byte("\x00\x01f\x00octet\x00"), server)
	buf := make([]byte, 600)
	var got []byte
	for block := uint16(1); ; block++ {
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := client.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("block %d: %v", block, err)
		}
		if buf[1] != 3 || uint16(buf[2])<<8|uint16(buf[3]) != block {
			t.Fatalf("block %d: got %q", block, buf[:4])
		}
		got = append(got, buf[4:n]...)
		if block == 3 {
			// A stranger ACKs ahead and sends an ERROR to the transfer's port.
			stranger.WriteToUDP(ack(100), from)
			stranger.WriteToUDP([]byte("\x00\x05\x00\x00go away\x00"), from)
		}
		client.WriteToUDP(ack(block), from)
		if n-4 < 512 {
			break
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the file's %d", len(got), len(want))
	}

	// A client that gets block 1 and goes away: the server's first resend
	// meets a closed port.
	gone, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	gone.WriteToUDP([]byte("\x00\x01f\x00octet\x00"), server)
	gone.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := gone.ReadFromUDP(buf); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	start := time.Now()
	for transfers(t, metrics, "error") < 1 {
		if time.Since(start) > 4*timeout {
			t.Fatalf("the transfer to a vanished client still ran after %s: the port unreachable was not heeded (retries would take %s)",
				time.Since(start), (maxRetries+1)*timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok := transfers(t, metrics, "ok"); ok != 1 {
		t.Errorf("%v good transfers counted, want 1", ok)
	}
}
