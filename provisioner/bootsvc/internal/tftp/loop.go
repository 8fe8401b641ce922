package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sender runs every octet transfer of the server on one goroutine
// around one epoll instance, the way dnsmasq runs its TFTP: a lockstep
// transfer spends its life waiting for the client's ACK, so a goroutine
// per transfer mostly costs scheduling (park on the netpoller, wake, hand
// the ACK over) and a read(2) per block. Profiled against dnsmasq 2.90 on
// the bench (10 and 50 clients), pin/tftp's sender spent 20–28 µs of CPU
// and ~5 system calls per block, dnsmasq 13–19 µs and ~4–5. Here a block
// costs one recv(2) for the ACK and one sendmmsg(2) for the next block (a
// whole RFC 7440 window in that same call), plus a share of epoll_wait:
//
//   - each transfer has its own socket, bound to the address the request
//     came to and connected to the client's address and port (RFC 1350's
//     transfer identifiers): the kernel delivers only that client's
//     packets, and sends need no address;
//   - blocks are slices of the file in memory (files.go), handed to the
//     kernel by an iovec: no copy, no read per block;
//   - timeouts need no timer per transfer: deadlines only move later, so
//     the loop scans for expired ones when the earliest can have passed.
//
// What a transfer does on each packet or timeout is decided by transfer.go.
type sender struct {
	epfd, wake int
	log        *slog.Logger
	timeout    time.Duration

	mu       sync.Mutex
	incoming []*xfer
	closing  bool
	stopped  chan struct{}

	// Owned by the loop goroutine.
	active    map[int32]*xfer
	nextCheck time.Time
}

// xfer is one transfer in the loop: its socket, state and buffers.
type xfer struct {
	fd       int
	t        *transfer
	file     *bootFile
	deadline time.Time
	hdr      []byte       // 4 bytes per block of a window
	iov      []unix.Iovec // 2 per block of a window
	msgs     []mmsghdr
	buf      []byte // a window of blocks, when the file is read from disk
	// done gets the bytes the client acknowledged and why the transfer
	// ended (nil: complete); it runs on a goroutine of its own.
	done func(sent int64, err error)
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newSender(timeout time.Duration, log *slog.Logger) (*sender, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating the TFTP sender's epoll instance: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("creating the TFTP sender's eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("watching the TFTP sender's eventfd: %w", err)
	}
	s := &sender{epfd: epfd, wake: wake, log: log, timeout: timeout, stopped: make(chan struct{}), active: map[int32]*xfer{}}
	go s.run()
	return s, nil
}

// transferSocket opens the socket of one transfer: bound to local (port 0,
// a fresh transfer identifier) and connected to the client.
func transferSocket(local netip.Addr, peer netip.AddrPort) (int, error) {
	if !local.Is4() || !peer.Addr().Is4() {
		return -1, errors.New("not IPv4")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening a transfer socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding a transfer socket to %s: %w", local, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: peer.Addr().As4(), Port: int(peer.Port())}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connecting a transfer socket to %s: %w", peer, err)
	}
	return fd, nil
}

// start hands a transfer to the loop, which owns fd and file from here.
func (s *sender) start(fd int, p plan, file *bootFile, done func(int64, error)) {
	x := &xfer{fd: fd, t: newTransfer(p, file.size), file: file, done: done}
	slots := int(min(x.t.window, x.t.last+1))
	x.hdr = make([]byte, 4*slots)
	x.iov = make([]unix.Iovec, 2*slots)
	x.msgs = make([]mmsghdr, slots)
	if file.data == nil {
		x.buf = make([]byte, slots*p.blksize)
	}
	s.mu.Lock()
	s.incoming = append(s.incoming, x)
	s.mu.Unlock()
	s.poke()
}

func (s *sender) poke() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.wake, one[:])
}

// close lets the transfers in flight finish (each bounded by its timeout
// and retries), then stops the loop.
func (s *sender) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.poke()
	<-s.stopped
}

func (s *sender) run() {
	defer close(s.stopped)
	defer unix.Close(s.epfd)
	defer unix.Close(s.wake)
	events := make([]unix.EpollEvent, 256)
	rcv := make([]byte, 1024)
	var drain [8]byte
	busy := false
	for {
		wait := -1
		if len(s.active) > 0 {
			wait = int(math.Ceil(float64(time.Until(s.nextCheck)) / float64(time.Millisecond)))
			wait = max(wait, 0)
		}
		n, err := epollWait(s.epfd, events, wait, busy)
		busy = n > 1
		if err != nil && !errors.Is(err, unix.EINTR) {
			s.log.Error("TFTP sender stopped: epoll_wait failed", "err", err)
			for _, x := range s.active {
				s.end(x, errors.New("the TFTP sender stopped"))
			}
			return
		}
		now := time.Now()
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == s.wake {
				unix.Read(s.wake, drain[:])
				if s.admit(now) {
					return
				}
				continue
			}
			x := s.active[ev.Fd]
			if x == nil {
				continue
			}
			m, err := recvNonblocking(x.fd, rcv)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				// ECONNREFUSED: an ICMP port unreachable, the client is gone.
				s.step(x, stepFail, fmt.Errorf("receiving from the client: %w", err), now)
				continue
			}
			st, err := x.t.onPacket(rcv[:m])
			s.step(x, st, err, now)
		}
		if !now.Before(s.nextCheck) {
			s.expire(now)
		}
		if s.admit(now) {
			return
		}
	}
}

// admit takes the transfers handed over since the last call into the loop
// and sends their first packet; it says whether the loop should stop
// (closing, and nothing left in flight).
func (s *sender) admit(now time.Time) bool {
	s.mu.Lock()
	in, closing := s.incoming, s.closing
	s.incoming = nil
	s.mu.Unlock()
	for _, x := range in {
		if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, x.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(x.fd)}); err != nil {
			s.end(x, fmt.Errorf("watching the transfer socket: %w", err))
			continue
		}
		s.active[int32(x.fd)] = x
		if len(s.active) == 1 || now.Add(s.timeout).Before(s.nextCheck) {
			s.nextCheck = now.Add(s.timeout)
		}
		s.step(x, stepSend, nil, now)
	}
	return closing && len(s.active) == 0
}

// expire runs the timeouts that are due and finds the next one.
func (s *sender) expire(now time.Time) {
	next := now.Add(s.timeout)
	for _, x := range s.active {
		if !now.Before(x.deadline) {
			st, err := x.t.onTimeout()
			s.step(x, st, err, now)
			if s.active[int32(x.fd)] == nil {
				continue
			}
		}
		if x.deadline.Before(next) {
			next = x.deadline
		}
	}
	s.nextCheck = next
}

// step carries out what the transfer decided.
func (s *sender) step(x *xfer, st step, err error, now time.Time) {
	switch st {
	case stepSend:
		if err := s.send(x); err != nil {
			s.end(x, err)
			return
		}
		x.deadline = now.Add(s.timeout)
	case stepDone:
		s.end(x, nil)
	case stepFail:
		if !errors.Is(err, errClientAborted) {
			sendError(x.fd, 0, "transfer failed")
		}
		s.end(x, err)
	}
}

// send sends the blocks due, a whole window in one sendmmsg(2).
func (s *sender) send(x *xfer) error {
	from, to := x.t.due()
	k := 0
	for i := from; i <= to; i++ {
		m := &x.msgs[k]
		iov := x.iov[2*k : 2*k+2]
		if i == 0 {
			iov[0] = unix.Iovec{Base: &x.t.oack[0]}
			iov[0].SetLen(len(x.t.oack))
			m.hdr = unix.Msghdr{Iov: &iov[0]}
			m.hdr.SetIovlen(1)
			k++
			continue
		}
		h := x.hdr[4*k : 4*k+4]
		binary.BigEndian.PutUint16(h, 3)
		binary.BigEndian.PutUint16(h[2:], uint16(i))
		iov[0] = unix.Iovec{Base: &h[0]}
		iov[0].SetLen(4)
		off, n := x.t.span(i)
		var data []byte
		if x.file.data != nil {
			data = x.file.data[off : off+n]
		} else if n > 0 {
			data = x.buf[k*int(x.t.blksize) : k*int(x.t.blksize)+int(n)]
			if _, err := x.file.f.ReadAt(data, off); err != nil {
				return fmt.Errorf("reading block %d: %w", i, err)
			}
		}
		m.hdr = unix.Msghdr{Iov: &iov[0]}
		if len(data) > 0 {
			iov[1] = unix.Iovec{Base: &data[0]}
			iov[1].SetLen(len(data))
			m.hdr.SetIovlen(2)
		} else {
			m.hdr.SetIovlen(1)
		}
		k++
	}
	if k == 0 {
		return nil
	}
	// A raw system call: the socket never blocks, so the scheduler need
	// not hear of it (see epollWait).
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(x.fd), uintptr(unsafe.Pointer(&x.msgs[0])), uintptr(k), 0, 0, 0)
	runtime.KeepAlive(x)
	switch errno {
	case 0, unix.EAGAIN, unix.ENOBUFS:
		// Whatever did not fit in the socket buffer is lost like a dropped
		// packet: the client's re-ACK or the timeout sends it again.
	default:
		return fmt.Errorf("sending blocks %d–%d: %w", from, to, errno)
	}
	x.t.sentUpTo(to)
	return nil
}

// end finishes a transfer: its socket closes (which also removes it from
// epoll), and its done runs on a goroutine of its own, so recording the
// transfer never holds up the others.
func (s *sender) end(x *xfer, err error) {
	delete(s.active, int32(x.fd))
	unix.Close(x.fd)
	x.file.Close()
	sent := x.t.ackedBytes()
	if err == nil {
		sent = x.t.size
	}
	go x.done(sent, err)
}

// epollWait is epoll_wait(2). When busy (the last call found several
// transfers ready) it first asks without waiting, as a raw system call:
// under load events are almost always ready, and a call that cannot block
// needs none of the Go scheduler's bookkeeping for one that might (handing
// the processor to another thread when it blocks for long). Otherwise, or
// when nothing is ready, it blocks as a normal system call: a lone
// lockstep transfer then costs one epoll_wait per block, not two.
func epollWait(epfd int, events []unix.EpollEvent, msec int, busy bool) (int, error) {
	if busy {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno == 0 && (r > 0 || msec == 0) {
			return int(r), nil
		}
	}
	return unix.EpollWait(epfd, events, msec)
}

// recvNonblocking reads one datagram from a non-blocking socket, as a raw
// system call (it cannot block).
func recvNonblocking(fd int, p []byte) (int, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// sendError tells the client why its transfer stopped (best effort: the
// client may already be gone).
func sendError(fd int, code uint16, msg string) {
	p := binary.BigEndian.AppendUint16(nil, 5)
	p = binary.BigEndian.AppendUint16(p, code)
	unix.Write(fd, append(append(p, msg...), 0))
}
