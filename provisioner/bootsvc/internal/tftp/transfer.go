package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// transfer is the sending side of one read request as pure state: which
// blocks go out next, what an arriving packet or a timeout changes. The
// event loop (loop.go) owns the sockets and the clock; this file decides,
// so every rule below is tested without a socket (transfer_test.go).
//
// Blocks are counted in int64 from 0, the OACK (or, without options, the
// request itself, acknowledged implicitly), to last, the final block,
// which is always short and possibly empty (RFC 1350: a block of less
// than blksize ends the transfer). On the wire block numbers are uint16
// and wrap at 65535 to 0, so a file of any length stays unambiguous here.
//
// One block per ACK (window 1) is RFC 1350's lockstep, what every PXE ROM
// and iPXE do; RFC 7440's windowsize lets up to window blocks be in flight.
// An ACK for block n acknowledges every block up to n and moves the window
// to n+1 (an ACK for an earlier block of the window therefore resends from
// there); a duplicate ACK of the last acknowledged block resends the window
// once (the client lost part of it) but never for window 1, and never twice
// for the same block: RFC 1123 §4.2.3.1's Sorcerer's Apprentice fix — a
// duplicated ACK must not double every packet after it; only a timeout
// resends then. A timeout resends the window, at most maxRetries times in a
// row without progress.
type transfer struct {
	blksize int64
	window  int64
	size    int64
	last    int64 // index of the final block
	oack    []byte

	acked     int64 // highest block the client acknowledged (-1: OACK pending)
	sent      int64 // highest block sent
	resentFor int64 // the acked block whose duplicate ACK already caused a resend
	retries   int   // timeouts in a row without progress
}

func newTransfer(p plan, size int64) *transfer {
	t := &transfer{blksize: int64(p.blksize), window: int64(p.window), size: size, oack: p.oack, resentFor: -2}
	t.last = size/t.blksize + 1
	if p.oack == nil {
		t.acked = 0 // no OACK: the request is block 0, DATA 1 comes first
	} else {
		t.acked = -1
	}
	t.sent = t.acked
	return t
}

// due is the range of blocks to send now, from the first unacknowledged
// one to the end of the window; while the OACK is unacknowledged it is
// the whole window. The caller sends them and calls sentUpTo.
func (t *transfer) due() (from, to int64) {
	if t.acked < 0 {
		return 0, 0
	}
	return t.acked + 1, min(t.acked+t.window, t.last)
}

// sentUpTo records that blocks up to to went out.
func (t *transfer) sentUpTo(to int64) { t.sent = to }

// span returns the byte range of block i (i ≥ 1) in the file.
func (t *transfer) span(i int64) (off, n int64) {
	off = (i - 1) * t.blksize
	return off, max(0, min(t.blksize, t.size-off))
}

// ackedBytes is how much of the file the client has acknowledged.
func (t *transfer) ackedBytes() int64 { return min(max(t.acked, 0)*t.blksize, t.size) }

// step is what a packet or a timeout asks the loop to do.
type step int

const (
	stepNone step = iota // nothing to send (stale or duplicate packet)
	stepSend             // send due()
	stepDone             // the client acknowledged the final block
	stepFail             // give up: err says why
)

// errClientAborted marks a transfer the client ended with an ERROR packet
// (some PXE ROMs probe tsize that way); it gets no ERROR back.
var errClientAborted = errors.New("client aborted the transfer")

// onPacket applies a packet from the client (only the client's own
// packets reach a transfer: its socket is connected to the client's
// address and port, the RFC 1350 transfer identifiers).
func (t *transfer) onPacket(p []byte) (step, error) {
	if len(p) < 4 {
		return stepNone, nil
	}
	switch binary.BigEndian.Uint16(p) {
	case 5: // ERROR
		return stepFail, fmt.Errorf("%w (code %d: %q)", errClientAborted,
			binary.BigEndian.Uint16(p[2:]), strings.TrimRight(string(p[4:]), "\x00"))
	case 4: // ACK
		delta := int64(binary.BigEndian.Uint16(p[2:]) - uint16(t.acked))
		if delta > t.sent-t.acked {
			return stepNone, nil // an ACK for a block before the window: stale
		}
		if delta == 0 {
			if t.window > 1 && t.resentFor != t.acked {
				t.resentFor = t.acked
				return stepSend, nil
			}
			return stepNone, nil
		}
		t.acked += delta
		t.retries = 0
		if t.acked == t.last {
			return stepDone, nil
		}
		return stepSend, nil
	}
	return stepNone, nil // not a packet a sender expects: ignored
}

// onTimeout is the round trip's time running out: resend the window, or
// give up after maxRetries resends without progress.
func (t *transfer) onTimeout() (step, error) {
	if t.retries++; t.retries > maxRetries {
		return stepFail, fmt.Errorf("no ACK after block %d (%d tries)", max(t.acked, 0), maxRetries+1)
	}
	return stepSend, nil
}
