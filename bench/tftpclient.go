package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/racker/racker/netenv"
)

// listenUDPIn opens a UDP socket inside network namespace ns; the socket
// stays there whichever goroutine uses it.
func listenUDPIn(ns string) (conn *net.UDPConn, err error) {
	err = netenv.Do(ns, func() error {
		conn, err = net.ListenUDP("udp4", nil)
		return err
	})
	return conn, err
}

// tftpTimeout is how long the bench's client waits for a packet before it
// re-acknowledges (a timeout, counted); tftpTries bounds the timeouts in a
// row before the transfer is lost. 1 s and 4 tries stay inside the 4 s a
// PXE ROM gives a server before it retransmits its own request.
const (
	tftpTimeout = time.Second
	tftpTries   = 4
)

// tftpStats is what one transfer cost the client besides its bytes.
type tftpStats struct {
	bytes    int
	blocks   int // DATA packets accepted
	timeouts int // waits of tftpTimeout that ended with a re-ACK
}

// tftpGet fetches file from server with the given block size and, when
// window > 1, RFC 7440 windowsize; a server that does not acknowledge an
// option falls back to its default, as a real client would. It returns the
// bytes received. The bench uses its own client so both servers are measured
// by the same code.
func tftpGet(ns string, server *net.UDPAddr, file string, blksize, window int) (int, error) {
	st, err := tftpFetch(ns, server, file, blksize, window, nil)
	return st.bytes, err
}

// tftpFetch is tftpGet with the transfer's counts; the data goes to sink
// when it is not nil.
func tftpFetch(ns string, server *net.UDPAddr, file string, blksize, window int, sink *bytes.Buffer) (tftpStats, error) {
	var st tftpStats
	conn, err := listenUDPIn(ns)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	var rrq bytes.Buffer
	rrq.Write([]byte{0, 1})
	for _, s := range []string{file, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"} {
		rrq.WriteString(s)
		rrq.WriteByte(0)
	}
	if window > 1 {
		rrq.WriteString("windowsize\x00" + strconv.Itoa(window) + "\x00")
	}
	if _, err := conn.WriteToUDP(rrq.Bytes(), server); err != nil {
		return st, err
	}
	size, win := 512, 1
	var peer *net.UDPAddr
	buf := make([]byte, 65536)
	expected := uint16(1)
	total, inWindow, retries := 0, 0, 0
	ack := func(block uint16) error {
		_, err := conn.WriteToUDP([]byte{0, 4, byte(block >> 8), byte(block)}, peer)
		return err
	}
	for {
		conn.SetReadDeadline(time.Now().Add(tftpTimeout))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && retries < tftpTries {
				retries++
				st.timeouts++
				if peer == nil { // the request itself was lost
					conn.WriteToUDP(rrq.Bytes(), server)
				} else {
					ack(expected - 1)
				}
				continue
			}
			st.bytes = total
			return st, fmt.Errorf("tftp %s: %w", file, err)
		}
		if peer == nil {
			peer = from
		}
		if n < 4 {
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case 6: // OACK
			opts := bytes.Split(buf[2:n], []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				v, _ := strconv.Atoi(string(opts[i+1]))
				switch string(bytes.ToLower(opts[i])) {
				case "blksize":
					size = v
				case "windowsize":
					win = v
				}
			}
			if err := ack(0); err != nil {
				st.bytes = total
				return st, err
			}
		case 3: // DATA
			block := binary.BigEndian.Uint16(buf[2:])
			if block != expected {
				// Out of order: ask for the window again from the last good block.
				ack(expected - 1)
				inWindow = 0
				continue
			}
			retries = 0
			st.blocks++
			if sink != nil {
				sink.Write(buf[4:n])
			}
			data := n - 4
			total += data
			expected++
			inWindow++
			last := data < size
			if last || inWindow >= win {
				inWindow = 0
				if err := ack(block); err != nil {
					st.bytes = total
					return st, err
				}
			}
			if last {
				st.bytes = total
				return st, nil
			}
		case 5: // ERROR
			st.bytes = total
			return st, fmt.Errorf("tftp %s: server error %q", file, bytes.TrimRight(buf[4:n], "\x00"))
		}
	}
}
