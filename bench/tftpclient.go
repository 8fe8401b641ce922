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

// tftpGet fetches file from server with the given block size and, when
// window > 1, RFC 7440 windowsize; a server that does not acknowledge an
// option falls back to its default, as a real client would. It returns the
// bytes received. The bench uses its own client so both servers are measured
// by the same code.
func tftpGet(ns string, server *net.UDPAddr, file string, blksize, window int) (int, error) {
	conn, err := listenUDPIn(ns)
	if err != nil {
		return 0, err
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
		return 0, err
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
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && peer != nil && retries < 5 {
				retries++
				ack(expected - 1)
				continue
			}
			return total, fmt.Errorf("tftp %s: %w", file, err)
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
				return total, err
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
			data := n - 4
			total += data
			expected++
			inWindow++
			last := data < size
			if last || inWindow >= win {
				inWindow = 0
				if err := ack(block); err != nil {
					return total, err
				}
			}
			if last {
				return total, nil
			}
		case 5: // ERROR
			return total, fmt.Errorf("tftp %s: server error %q", file, bytes.TrimRight(buf[4:n], "\x00"))
		}
	}
}
