package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// MaxWindow caps the RFC 7440 window a client may ask for: 64 blocks of
// 1432 bytes is ~90 KiB in flight, well inside a socket buffer, and past
// ~16 blocks the round trips saved no longer matter.
const MaxWindow = 64

// maxRetries bounds how often a window (or the OACK) is resent without any
// progress before the transfer is given up, as pin/tftp does (5).
const maxRetries = 5

// windowRequest is a read request that asked for RFC 7440 windowsize, with
// its options already negotiated.
type windowRequest struct {
	blksize, window int
	oack            []byte // the OACK packet acknowledging the options granted
}

// negotiateWindow decides whether a request goes through the windowed
// sender: only octet-mode requests carrying a valid windowsize do. It grants
// blksize the way pin/tftp does (512..65464, lowered to maxBlockLen, the
// interface's ceiling) and tsize when asked; other options are ignored, as
// RFC 2347 allows.
func negotiateWindow(opts map[string]string, mode string, maxBlockLen int, size int64) (windowRequest, bool) {
	lower := make(map[string]string, len(opts))
	for k, v := range opts {
		lower[strings.ToLower(k)] = v
	}
	w, err := strconv.Atoi(lower["windowsize"])
	if err != nil || w < 1 || w > 65535 || !strings.EqualFold(mode, "octet") {
		return windowRequest{}, false
	}
	req := windowRequest{blksize: 512, window: min(w, MaxWindow)}
	oack := []byte{0, 6}
	add := func(name, value string) { oack = append(append(append(append(oack, name...), 0), value...), 0) }
	if b, err := strconv.Atoi(lower["blksize"]); err == nil && b >= 512 && b <= 65464 {
		if maxBlockLen >= 512 && b > maxBlockLen {
			b = maxBlockLen
		}
		req.blksize = b
		add("blksize", strconv.Itoa(b))
	}
	if _, asked := lower["tsize"]; asked {
		add("tsize", strconv.FormatInt(size, 10))
	}
	add("windowsize", strconv.Itoa(req.window))
	req.oack = oack
	return req, true
}

// errClientAborted marks a transfer the client ended with an ERROR packet
// (some PXE ROMs probe tsize that way); it gets no ERROR back.
var errClientAborted = errors.New("client aborted the transfer")

// sendWindowed sends file (size bytes) to peer over conn, RFC 7440 style:
// the OACK is block 0; then up to req.window blocks go out before waiting
// for an ACK; an ACK for any block in flight moves the window to the block
// after it (so an ACK for an earlier block resends from there); a timeout
// resends the window, at most maxRetries times in a row. Block numbers wrap
// at 65535 to 0 on the wire; internally blocks are counted in int64 so a
// transfer of any length stays unambiguous. It returns the bytes the client
// acknowledged.
func sendWindowed(conn *net.UDPConn, peer *net.UDPAddr, file io.ReaderAt, size int64, req windowRequest, timeout time.Duration) (int64, error) {
	blk := int64(req.blksize)
	last := size/blk + 1 // the final block is always short, possibly empty
	acked, sent := int64(-1), int64(-1)
	resentFor := int64(-2) // the block whose duplicate ACK already caused a resend
	pkt := make([]byte, 4+req.blksize)
	rcv := make([]byte, 516)
	ackedBytes := func() int64 { return min(max(acked, 0)*blk, size) }

	sendWindow := func() error {
		end := int64(0) // until the OACK is acknowledged, it is the window
		if acked >= 0 {
			end = min(acked+int64(req.window), last)
		}
		for i := acked + 1; i <= end; i++ {
			p := req.oack
			if i > 0 {
				binary.BigEndian.PutUint16(pkt[0:], 3)
				binary.BigEndian.PutUint16(pkt[2:], uint16(i))
				n, err := file.ReadAt(pkt[4:], (i-1)*blk)
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("reading block %d: %w", i, err)
				}
				p = pkt[:4+n]
			}
			if _, err := conn.WriteToUDP(p, peer); err != nil {
				return fmt.Errorf("sending block %d: %w", i, err)
			}
		}
		sent = end
		return nil
	}

	if err := sendWindow(); err != nil {
		return 0, err
	}
	for retries := 0; ; {
		if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return ackedBytes(), fmt.Errorf("arming the ACK timeout: %w", err)
		}
		n, from, err := conn.ReadFromUDP(rcv)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return ackedBytes(), fmt.Errorf("waiting for an ACK: %w", err)
			}
			if retries++; retries > maxRetries {
				return ackedBytes(), fmt.Errorf("no ACK after block %d (%d tries of %s)", max(acked, 0), maxRetries+1, timeout)
			}
			if err := sendWindow(); err != nil {
				return ackedBytes(), err
			}
			continue
		}
		if !from.IP.Equal(peer.IP) || from.Port != peer.Port || n < 4 {
			continue // not this transfer's client (RFC 1350 TID rule)
		}
		switch binary.BigEndian.Uint16(rcv) {
		case 5:
			return ackedBytes(), fmt.Errorf("%w (code %d: %q)", errClientAborted,
				binary.BigEndian.Uint16(rcv[2:]), strings.TrimRight(string(rcv[4:n]), "\x00"))
		case 4:
			delta := int64(binary.BigEndian.Uint16(rcv[2:]) - uint16(acked))
			if delta > sent-acked {
				continue // an ACK for a block before the window: stale
			}
			if delta == 0 {
				// The client re-ACKed the last block it has: it lost part of
				// the window. Resend once per such block; a merely
				// duplicated ACK must not double every window after it
				// (RFC 1350's Sorcerer's Apprentice), so a repeat waits for
				// the timeout. A window of 1 never resends on a duplicate.
				if req.window > 1 && resentFor != acked {
					resentFor = acked
					if err := sendWindow(); err != nil {
						return ackedBytes(), err
					}
				}
				continue
			}
			acked += delta
			retries = 0
			if acked == last {
				return size, nil
			}
			if err := sendWindow(); err != nil {
				return ackedBytes(), err
			}
		}
	}
}

// sendError tells the client why its transfer stopped (best effort: the
// client may already be gone).
func sendError(conn *net.UDPConn, peer *net.UDPAddr, code uint16, msg string) {
	p := binary.BigEndian.AppendUint16(nil, 5)
	p = binary.BigEndian.AppendUint16(p, code)
	conn.WriteToUDP(append(append(p, msg...), 0), peer)
}
