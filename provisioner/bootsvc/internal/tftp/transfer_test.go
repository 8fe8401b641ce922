package tftp

import (
	"errors"
	"testing"
)

// The sender's rules, without sockets: what goes out after each packet or
// timeout.

func ack(block uint16) []byte { return []byte{0, 4, byte(block >> 8), byte(block)} }

// expectDue checks the blocks the transfer would send now.
func expectDue(t *testing.T, x *transfer, from, to int64) {
	t.Helper()
	if f, e := x.due(); f != from || e != to {
		t.Fatalf("due %d–%d, want %d–%d", f, e, from, to)
	}
}

// Lockstep without options (RFC 1350): DATA 1 first, one block per ACK,
// the final block short; a file that is a multiple of the block size
// ends with an empty block.
func TestLockstepWithoutOptions(t *testing.T) {
	x := newTransfer(plan{blksize: 512, window: 1}, 1024)
	if x.last != 3 {
		t.Fatalf("last block %d, want 3 (512, 512, then an empty one)", x.last)
	}
	expectDue(t, x, 1, 1)
	x.sentUpTo(1)
	for block := uint16(1); block <= 3; block++ {
		off, n := x.span(int64(block))
		if want := map[uint16]int64{1: 512, 2: 512, 3: 0}[block]; off != int64(block-1)*512 || n != want {
			t.Fatalf("block %d spans %d+%d", block, off, n)
		}
		st, err := x.onPacket(ack(block))
		if block == 3 {
			if st != stepDone || err != nil {
				t.Fatalf("final ACK: %v %v", st, err)
			}
			break
		}
		if st != stepSend || err != nil {
			t.Fatalf("ACK %d: %v %v", block, st, err)
		}
		expectDue(t, x, int64(block)+1, int64(block)+1)
		x.sentUpTo(int64(block) + 1)
	}
	if x.ackedBytes() != 1024 {
		t.Errorf("acked %d bytes", x.ackedBytes())
	}
}

// With options the OACK is block 0; the client's ACK 0 starts the data.
func TestOACKIsBlockZero(t *testing.T) {
	x := newTransfer(plan{blksize: 1432, window: 1, oack: []byte("\x00\x06tsize\x0010\x00")}, 10)
	expectDue(t, x, 0, 0)
	x.sentUpTo(0)
	if st, _ := x.onPacket(ack(1)); st != stepNone {
		t.Fatalf("an ACK for a block not yet sent moved the transfer: %v", st)
	}
	if st, _ := x.onPacket(ack(0)); st != stepSend {
		t.Fatalf("ACK 0: %v", st)
	}
	expectDue(t, x, 1, 1)
	x.sentUpTo(1)
	if st, _ := x.onPacket(ack(1)); st != stepDone {
		t.Fatalf("ACK of the only (short) block: %v", st)
	}
}

// RFC 1123 §4.2.3.1: in lockstep a duplicate ACK resends nothing (only the
// timeout does), or every later block would go out twice.
func TestLockstepDuplicateACKResendsNothing(t *testing.T) {
	x := newTransfer(plan{blksize: 512, window: 1}, 5000)
	x.sentUpTo(1)
	x.onPacket(ack(1))
	x.sentUpTo(2)
	for range 3 {
		if st, _ := x.onPacket(ack(1)); st != stepNone {
			t.Fatalf("a duplicate ACK 1 in lockstep: %v", st)
		}
	}
	if st, _ := x.onTimeout(); st != stepSend {
		t.Fatal("the timeout did not resend")
	}
	expectDue(t, x, 2, 2)
}

// RFC 7440: a window goes out at once; an ACK inside it resends from the
// block after it; a duplicate of the last ACK resends once per block.
func TestWindowMovesWithEachACK(t *testing.T) {
	x := newTransfer(plan{blksize: 100, window: 8, oack: []byte("o")}, 2000) // blocks 1..21
	x.sentUpTo(0)
	x.onPacket(ack(0))
	expectDue(t, x, 1, 8)
	x.sentUpTo(8)
	if st, _ := x.onPacket(ack(5)); st != stepSend { // 6 was lost
		t.Fatalf("ACK 5 inside the window: %v", st)
	}
	expectDue(t, x, 6, 13)
	x.sentUpTo(13)
	if st, _ := x.onPacket(ack(5)); st != stepSend {
		t.Fatal("the first duplicate ACK 5 did not resend the window")
	}
	if st, _ := x.onPacket(ack(5)); st != stepNone {
		t.Fatal("a second duplicate ACK 5 resent the window again")
	}
	if st, _ := x.onPacket(ack(2)); st != stepNone {
		t.Fatal("a stale ACK before the window moved it")
	}
	x.onPacket(ack(13))
	expectDue(t, x, 14, 21)
	x.sentUpTo(21)
	if st, _ := x.onPacket(ack(21)); st != stepDone {
		t.Fatalf("final ACK: %v", st)
	}
}

// More than 65535 blocks: the wire's block numbers wrap to 0 and the
// transfer keeps counting.
func TestBlockNumbersWrap(t *testing.T) {
	x := newTransfer(plan{blksize: 512, window: 4}, 70000*512+1)
	for x.acked < 65540 {
		_, to := x.due()
		x.sentUpTo(to)
		if st, _ := x.onPacket(ack(uint16(to))); st != stepSend {
			t.Fatalf("ACK %d (wire %d): %v", to, uint16(to), st)
		}
	}
	if x.acked != 65540 {
		t.Fatalf("acked %d", x.acked)
	}
}

// maxRetries timeouts in a row without progress give up; progress resets
// the count. An ERROR from the client aborts at once.
func TestTimeoutsAndClientErrors(t *testing.T) {
	x := newTransfer(plan{blksize: 512, window: 1}, 5000)
	x.sentUpTo(1)
	for range maxRetries {
		if st, _ := x.onTimeout(); st != stepSend {
			t.Fatal("gave up too early")
		}
	}
	x.onPacket(ack(1))
	for range maxRetries {
		x.onTimeout()
	}
	if st, err := x.onTimeout(); st != stepFail || err == nil {
		t.Fatalf("after %d timeouts in a row: %v %v", maxRetries+1, st, err)
	}
	y := newTransfer(plan{blksize: 512, window: 1}, 5000)
	st, err := y.onPacket([]byte("\x00\x05\x00\x08tsize probe\x00"))
	if st != stepFail || !errors.Is(err, errClientAborted) {
		t.Fatalf("client ERROR: %v %v", st, err)
	}
	for _, junk := range [][]byte{nil, {0}, {0, 3, 0, 1}, {0, 1, 'x', 0}} {
		if st, _ := y.onPacket(junk); st != stepNone {
			t.Errorf("packet %q moved the transfer: %v", junk, st)
		}
	}
}

// An empty file is one empty block.
func TestEmptyFile(t *testing.T) {
	x := newTransfer(plan{blksize: 512, window: 1}, 0)
	expectDue(t, x, 1, 1)
	if _, n := x.span(1); n != 0 {
		t.Fatalf("block 1 of an empty file has %d bytes", n)
	}
	x.sentUpTo(1)
	if st, _ := x.onPacket(ack(1)); st != stepDone {
		t.Fatal("not done")
	}
}
