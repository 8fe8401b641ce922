// Package tftp serves the iPXE binaries that PXE firmware loads before iPXE
// takes over over HTTP (undionly.kpxe for BIOS, ipxe.efi for UEFI).
//
// It is read-only on purpose: write requests are refused, and a requested
// name with any ".." component is refused rather than resolved, so a client
// can only name files below the boot-files folder. Symlinks the folder
// itself holds are followed: they are the administrator's (Debian links
// /usr/lib/ipxe/ipxe.efi to /boot/ipxe.efi), not the client's.
//
// pin/tftp listens on port 69 and parses requests (with the blksize
// ceiling it works out from the receiving interface's MTU); the sending is
// Racker's own (loop.go): every octet transfer, lockstep or RFC 7440
// windowed, runs on one event loop from files kept in memory (files.go),
// with one recv and one sendmmsg per block or window, because a rack of
// PXE ROMs fetching undionly.kpxe or ipxe.efi at once is what this server
// is for. Options are negotiated as pin/tftp did (negotiate.go). Requests
// in netascii mode, or that pinpeek.go cannot read out of pin/tftp, keep
// pin/tftp's own sender.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Config is what the server needs; Root is required.
type Config struct {
	Root string // the boot-files folder
	// MACForIP names the machine behind a client address for events
	// (planned addresses and leases); "" when unknown.
	MACForIP func(netip.Addr) string
	Recorder api.Recorder // a tftp event per file sent; may be nil
	Metrics  *api.Metrics
	Logger   *slog.Logger
	// Timeout per round trip (default 2 s: firmware retransmits quickly).
	Timeout time.Duration
}

// Server is a read-only TFTP server over one boot-files folder.
type Server struct {
	cfg   Config
	srv   *tftp.Server
	log   *slog.Logger
	files fileCache

	sendOnce sync.Once
	snd      *sender
	sendErr  error
}

// New opens the boot-files folder and prepares the server; Serve runs it.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if st, err := os.Stat(cfg.Root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("opening the TFTP boot-files folder %q: not a folder (%v)", cfg.Root, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.srv = tftp.NewServer(s.read, nil) // nil write handler: writes are refused
	s.srv.SetTimeout(cfg.Timeout)
	s.srv.SetBlockSize(65456) // the client's blksize wins, clamped to the MTU
	return s, nil
}

// Serve answers requests on conn until Shutdown; it owns conn from then on.
func (s *Server) Serve(conn net.PacketConn) error {
	if err := s.srv.Serve(conn); err != nil {
		return fmt.Errorf("serving TFTP on %s: %w", conn.LocalAddr(), err)
	}
	return nil
}

// Shutdown stops accepting requests, lets transfers in flight finish (each
// bounded by the timeout and retries).
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.sendOnce.Do(func() { s.sendErr = ErrShutdown })
	if s.snd != nil {
		s.snd.close()
	}
}

// ErrShutdown is what a request that arrives during Shutdown gets.
var ErrShutdown = errors.New("TFTP server shutting down")

// ErrForbidden is what a request for a name outside the folder gets.
var ErrForbidden = errors.New("access violation: outside the boot-files folder")

// CleanName turns a requested file name into a path relative to the root:
// leading slashes and backslashes (some firmware sends "\ipxe.efi") are
// dropped; any ".." component is refused rather than resolved.
func CleanName(name string) (string, error) {
	name = strings.ReplaceAll(name, `\`, "/")
	name = strings.TrimLeft(name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		return "", ErrForbidden
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", ErrForbidden
		}
	}
	return path.Clean(name), nil
}

func (s *Server) read(name string, rf io.ReaderFrom) error {
	peer := ""
	var peerAddr netip.AddrPort
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		peer = ra.String()
		peerAddr = ra.AddrPort()
		peerAddr = netip.AddrPortFrom(peerAddr.Addr().Unmap(), peerAddr.Port())
	}
	peerIP := peerAddr.Addr()
	log := s.log.With("file", name, "client", peer)
	rel, err := CleanName(name)
	if err != nil {
		log.Warn("TFTP request refused", "err", err)
		s.cfg.Metrics.Transfer("refused", 0, err)
		return err
	}
	f, err := s.files.open(filepath.Join(s.cfg.Root, filepath.FromSlash(rel)))
	if err != nil {
		log.Info("TFTP file not served", "err", err)
		s.cfg.Metrics.Transfer("missing", 0, err)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("file not found: %s", rel)
		case errors.Is(err, errNotRegular):
			return fmt.Errorf("not a file: %s", rel)
		}
		return ErrForbidden
	}
	// Octet transfers go to the sender (loop.go), on a socket of its own;
	// pin/tftp has not answered yet, and the socket it opened is closed.
	if req, ok := peekPinRequest(rf); ok {
		if p, ok := negotiate(req.opts, req.mode, req.maxBlockLen, f.size); ok {
			local, _ := netip.AddrFromSlice(req.conn.LocalAddr().(*net.UDPAddr).IP.To4())
			fd, err := transferSocket(local, peerAddr)
			if err == nil {
				snd, serr := s.sender()
				if serr == nil {
					req.conn.Close()
					if p.window > 1 {
						log = log.With("windowsize", p.window, "blksize", p.blksize)
					}
					snd.start(fd, p, f, func(n int64, err error) { s.finish(log, rel, peer, peerIP, n, err) })
					return nil // pin/tftp must not answer: the sender does
				}
				unix.Close(fd)
				err = serr
			}
			log.Debug("TFTP transfer left to pin/tftp", "err", err)
		}
	}
	defer f.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(f.size) // tsize
	}
	n, err := rf.ReadFrom(f.reader())
	return s.finish(log, rel, peer, peerIP, n, err)
}

// sender starts the event loop at the first transfer.
func (s *Server) sender() (*sender, error) {
	s.sendOnce.Do(func() { s.snd, s.sendErr = newSender(s.cfg.Timeout, s.log) })
	return s.snd, s.sendErr
}

// finish counts, logs and records one transfer, whichever sender ran it.
func (s *Server) finish(log *slog.Logger, rel, peer string, peerIP netip.Addr, n int64, err error) error {
	s.cfg.Metrics.Transfer(rel, n, err)
	if err != nil {
		log.Warn("TFTP transfer failed", "sent", n, "err", err)
		return fmt.Errorf("sending %s to %s: %w", rel, peer, err)
	}
	log.Debug("TFTP file sent", "bytes", n)
	if s.cfg.Recorder != nil {
		mac := ""
		if s.cfg.MACForIP != nil && peerIP.IsValid() {
			mac = s.cfg.MACForIP(peerIP)
		}
		s.cfg.Recorder.Record(api.Event{Time: time.Now(), MAC: mac, Kind: api.KindTFTP, Source: peer,
			Message: rel + " " + strconv.FormatInt(n, 10) + " bytes"})
	}
	return nil
}

// Listen opens the TFTP socket (UDP port, 69 in production) bound to
// ifname, so the boot files are offered on the PXE interface only.
func Listen(ctx context.Context, ifname string, port int) (*net.UDPConn, error) {
	var serr error
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) {
			if ifname != "" {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("opening the TFTP socket on %s port %d: %w", ifname, port, err)
	}
	return pc.(*net.UDPConn), nil
}
