package tftp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// windowClient is a small RFC 7440 receiver written for these tests (the
// bench has its own; tests do not import it). lose says whether to drop a
// DATA packet as if the network had (seen counts DATA packets received so
// far, including this one); dupACKs sends every ACK twice.
type windowClient struct {
	blksize, window int
	lose            func(seen int, block uint16) bool
	// reACKAfter, when > 0, re-ACKs the last good block as soon as that many
	// packets were dropped in a row, as a client that ignored a window does.
	reACKAfter int
	dupACKs    bool
}

type fetchResult struct {
	data []byte
	oack map[string]string // nil when the server sent no OACK
	acks int
}

func (c windowClient) get(t *testing.T, addr, name string) (fetchResult, error) {
	t.Helper()
	server, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rrq := []byte{0, 1}
	for _, s := range []string{name, "octet", "blksize", strconv.Itoa(c.blksize), "tsize", "0"} {
		rrq = append(append(rrq, s...), 0)
	}
	if c.window > 0 {
		rrq = append(rrq, "windowsize\x00"+strconv.Itoa(c.window)+"\x00"...)
	}
	if _, err := conn.WriteToUDP(rrq, server); err != nil {
		t.Fatal(err)
	}
	var res fetchResult
	var peer *net.UDPAddr
	size, win := 512, 1
	expected, inWindow, seen, droppedInRow := uint16(1), 0, 0, 0
	ack := func(block uint16) {
		res.acks++
		for range 1 + btoi(c.dupACKs) {
			conn.WriteToUDP([]byte{0, 4, byte(block >> 8), byte(block)}, peer)
		}
	}
	buf := make([]byte, 65536)
	for timeouts := 0; ; {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() && peer != nil && timeouts < 20 {
				timeouts++
				ack(expected - 1) // RFC 7440: on a timeout, ACK the last good block
				continue
			}
			return res, fmt.Errorf("receiving %s: %w", name, err)
		}
		if peer == nil {
			peer = from
		}
		if n < 4 {
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case 6:
			res.oack = map[string]string{}
			opts := bytes.Split(buf[2:n], []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				res.oack[string(opts[i])] = string(opts[i+1])
			}
			size, _ = strconv.Atoi(res.oack["blksize"])
			if size == 0 {
				size = 512
			}
			if w, err := strconv.Atoi(res.oack["windowsize"]); err == nil {
				win = w
			}
			ack(0)
		case 3:
			seen++
			block := binary.BigEndian.Uint16(buf[2:])
			if c.lose != nil && c.lose(seen, block) {
				if droppedInRow++; c.reACKAfter > 0 && droppedInRow == c.reACKAfter {
					droppedInRow = 0
					ack(expected - 1)
				}
				continue
			}
			droppedInRow = 0
			if block != expected {
				ack(expected - 1) // out of order: resend from after the last good one
				inWindow = 0
				continue
			}
			timeouts = 0
			res.data = append(res.data, buf[4:n]...)
			expected++
			inWindow++
			last := n-4 < size
			if last || inWindow >= win {
				inWindow = 0
				ack(block)
			}
			if last {
				return res, nil
			}
		case 5:
			return res, fmt.Errorf("server error %q", bytes.TrimRight(buf[4:n], "\x00"))
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func randomFile(t testing.TB, root, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWindowsizeIsNegotiatedAndHonoured(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "flatcar.img", 3<<20+7)
	events := make(chan api.Event, 10)
	addr := serve(t, root, api.RecorderFunc(func(e api.Event) { events <- e }))
	for _, window := range []int{8, 16} {
		res, err := windowClient{blksize: 1432, window: window}.get(t, addr, "/flatcar.img")
		if err != nil {
			t.Fatalf("window %d: %v", window, err)
		}
		if !bytes.Equal(res.data, want) {
			t.Fatalf("window %d: got %d bytes, want the file's %d", window, len(res.data), len(want))
		}
		wantOACK := map[string]string{"blksize": "1432", "tsize": strconv.Itoa(len(want)), "windowsize": strconv.Itoa(window)}
		if fmt.Sprint(res.oack) != fmt.Sprint(wantOACK) {
			t.Errorf("window %d: OACK %v, want %v", window, res.oack, wantOACK)
		}
		blocks := len(want)/1432 + 1
		// One ACK per full window, one for the short last block, one for the OACK.
		if wantACKs := blocks/window + 1 + 1; res.acks != wantACKs {
			t.Errorf("window %d: the client sent %d ACKs, want %d", window, res.acks, wantACKs)
		}
		select {
		case e := <-events:
			if e.Kind != api.KindTFTP || e.Message != "flatcar.img "+strconv.Itoa(len(want))+" bytes" {
				t.Errorf("window %d: event %+v", window, e)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("window %d: no tftp event", window)
		}
	}
}

// More than 65535 blocks: block numbers wrap on the wire.
func TestWindowedTransferWrapsBlockNumbers(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "big", 65536*512+300)
	addr := serve(t, root, nil)
	res, err := windowClient{blksize: 512, window: 16}.get(t, addr, "big")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.data, want) {
		t.Fatalf("got %d bytes, want the file's %d", len(res.data), len(want))
	}
}

func TestWindowedTransferRecoversFromLostPacketsAndDuplicateACKs(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "f", 200*1024+5)
	addr := serve(t, root, nil)
	cases := map[string]windowClient{
		// The whole first window is ignored, then block 0 re-ACKed at once.
		"first window ignored": {blksize: 1024, window: 8, reACKAfter: 8,
			lose: func(seen int, _ uint16) bool { return seen <= 8 }},
		// Block 20 lost once mid-window: the client ACKs 19, the server
		// resends from 20.
		"one block lost": {blksize: 1024, window: 8,
			lose: func(seen int, block uint16) bool { return block == 20 && seen == 20 }},
		// Every ACK arrives twice.
		"duplicated ACKs": {blksize: 1024, window: 8, dupACKs: true},
		// The last window lost entirely: only the client's timeout re-ACK helps.
		"last window lost": {blksize: 1024, window: 8,
			lose: func(seen int, _ uint16) bool { return seen > 193 && seen <= 201 }},
	}
	for name, c := range cases {
		res, err := c.get(t, addr, "f")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(res.data, want) {
			t.Fatalf("%s: got %d bytes, want the file's %d", name, len(res.data), len(want))
		}
	}
}

func TestWithoutWindowsizeTheServerSendsOneBlockPerACK(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "f", 50_000)
	addr := serve(t, root, nil)
	res, err := windowClient{blksize: 1432}.get(t, addr, "f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.data, want) || res.oack["windowsize"] != "" || res.oack["blksize"] != "1432" {
		t.Fatalf("got %d bytes (want %d), OACK %v", len(res.data), len(want), res.oack)
	}
}

func TestWindowedRequestsAreStillConfinedToTheRoot(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	root := filepath.Join(t.TempDir(), "boot")
	os.Mkdir(root, 0o755)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "linked"))
	addr := serve(t, root, nil)
	for _, name := range []string{"../" + filepath.Base(outside) + "/secret", "/../../etc/passwd", "missing", "."} {
		if res, err := (windowClient{blksize: 1432, window: 16}).get(t, addr, name); err == nil {
			t.Errorf("%q was served (%q)", name, res.data)
		}
	}
	res, err := windowClient{blksize: 1432, window: 16}.get(t, addr, "linked")
	if err != nil || string(res.data) != "secret" {
		t.Fatalf("a symlink the folder holds: %q %v", res.data, err)
	}
}

func TestNegotiate(t *testing.T) {
	if _, ok := negotiate(map[string]string{"windowsize": "8"}, "netascii", 1500, 10); ok {
		t.Error("a netascii request went to the sender (pin/tftp keeps netascii)")
	}
	for _, c := range []struct {
		opts   map[string]string
		mode   string
		max    int
		window int
		blk    int
		oack   string
	}{
		// No option: lockstep, 512-byte blocks, no OACK (RFC 1350).
		{nil, "octet", 1500, 1, 512, ""},
		{map[string]string{"blksize": "1432"}, "octet", 1472, 1, 1432, "\x00\x06blksize\x001432\x00"},
		// windowsize 0 is not a window: ignored, as RFC 2347 allows.
		{map[string]string{"windowsize": "0"}, "octet", 1500, 1, 512, ""},
		{map[string]string{"WindowSize": "1000", "blksize": "9000"}, "OCTET", 1472, MaxWindow, 1472, "\x00\x06blksize\x001472\x00windowsize\x0064\x00"},
		// blksize below 512 is ignored (pin/tftp's rule, kept).
		{map[string]string{"windowsize": "4", "blksize": "100"}, "octet", 1472, 4, 512, "\x00\x06windowsize\x004\x00"},
		{map[string]string{"tsize": "0", "timeout": "3", "x-unknown": "1"}, "octet", 1472, 1, 512, "\x00\x06tsize\x0010\x00"},
	} {
		p, ok := negotiate(c.opts, c.mode, c.max, 10)
		if !ok || p.window != c.window || p.blksize != c.blk || string(p.oack) != c.oack {
			t.Errorf("%v: got %+v %q, %v; want window %d, blksize %d, OACK %q", c.opts, p, p.oack, ok, c.window, c.blk, c.oack)
		}
	}
}

// The server's own timeout resends a lost window; a client that goes silent
// is given up after maxRetries resends and counted as an error; a client
// that answers the OACK with an ERROR (a tsize probe) ends the transfer
// without an event.
func TestWindowedTransferTimeoutsAndAborts(t *testing.T) {
	root := t.TempDir()
	want := randomFile(t, root, "f", 100_000)
	metrics := api.NewMetrics()
	events := make(chan api.Event, 10)
	addr := serveWith(t, Config{Root: root, Metrics: metrics, Timeout: 20 * time.Millisecond,
		Recorder: api.RecorderFunc(func(e api.Event) { events <- e })})

	// The first window is lost and the client waits (300 ms) longer than
	// the server (20 ms): the server's timeout resends it.
	res, err := windowClient{blksize: 1024, window: 8, lose: func(seen int, _ uint16) bool { return seen <= 8 }}.get(t, addr, "f")
	if err != nil || !bytes.Equal(res.data, want) {
		t.Fatalf("after a lost window: %d bytes, %v", len(res.data), err)
	}
	if res.acks != 100_000/1024/8+1+1 {
		t.Errorf("the client sent %d ACKs: the server's timeout did not resend the window", res.acks)
	}
	<-events

	server, _ := net.ResolveUDPAddr("udp4", addr)
	for _, reply := range []string{"silence", "error"} {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.WriteToUDP([]byte("\x00\x01f\x00octet\x00tsize\x000\x00windowsize\x0016\x00"), server)
		buf := make([]byte, 1500)
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil || buf[1] != 6 || !bytes.Contains(buf[:n], []byte("windowsize\x0016\x00")) {
			t.Fatalf("%s: want an OACK with windowsize 16, got %q %v", reply, buf[:n], err)
		}
		if reply == "error" {
			conn.WriteToUDP([]byte("\x00\x05\x00\x08tsize probe\x00"), from)
		}
	}
	// Both transfers end as errors; the server needs 6 × 20 ms to give up on the silent one.
	failed := transfers(t, metrics, "error")
	for deadline := time.Now().Add(30 * time.Second); failed < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		failed = transfers(t, metrics, "error")
	}
	if failed != 2 {
		t.Errorf("%v failed transfers counted, want 2 (the silent client and the aborting one)", failed)
	}
	if ok := transfers(t, metrics, "ok"); ok != 1 {
		t.Errorf("%v good transfers counted, want 1", ok)
	}
	select {
	case e := <-events:
		t.Errorf("an event for a failed transfer: %+v", e)
	default:
	}
}

// transfers reads the TFTP transfer counter for file "f" and result.
func transfers(t *testing.T, m *api.Metrics, result string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if f.GetName() == "racker_tftp_transfers_total" && labels["file"] == "f" && labels["result"] == result {
				return metric.GetCounter().GetValue()
			}
		}
	}
	return 0
}
