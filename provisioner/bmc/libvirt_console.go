package bmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
)

// serialSource returns how to reach the first serial port: ("unix", path)
// or ("pty", device).
func serialSource(root *xmlNode) (kind, path string, err error) {
	if devs := root.child("devices"); devs != nil {
		for _, s := range devs.elements("serial") {
			src := s.child("source")
			if src == nil {
				continue
			}
			switch s.attr("type") {
			case "unix":
				if src.attr("mode") == "bind" || src.attr("mode") == "" {
					return "unix", src.attr("path"), nil
				}
			case "pty":
				if p := src.attr("path"); p != "" {
					return "pty", p, nil
				}
			}
		}
	}
	return "", "", errors.New("the domain has no serial port Racker can reach (want <serial type='unix'> with mode='bind', or type='pty')")
}

// Console connects to the domain's serial port. A second console on the
// same port, from any process, is refused: an abstract unix socket named
// after the port is bound for the console's lifetime, and the kernel
// releases it even if the process dies.
func (c *libvirtController) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	var kind, path string
	err := c.with(ctx, "opening the serial console", func(l *libvirt.Libvirt, d libvirt.Domain) error {
		on, err := running(l, d)
		if err != nil {
			return err
		}
		if !on {
			return errors.New("node is off")
		}
		x, err := l.DomainGetXMLDesc(d, 0) // live XML: a pty's path is known only there
		if err != nil {
			return fmt.Errorf("reading domain XML: %w", err)
		}
		root, err := parseXMLTree(x)
		if err != nil {
			return err
		}
		kind, path, err = serialSource(root)
		return err
	})
	if err != nil {
		return nil, err
	}
	lock, err := net.Listen("unix", "@racker-console:"+path)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, c.fail("opening the serial console", ErrConsoleBusy)
		}
		return nil, c.fail("opening the serial console", fmt.Errorf("taking the console lock: %w", err))
	}
	dial := func() (io.ReadWriteCloser, error) {
		if kind == "unix" {
			return net.DialTimeout("unix", path, c.opts.TryTimeout)
		}
		return os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	}
	rw, err := dial()
	if err != nil {
		lock.Close()
		return nil, c.fail("opening the serial console", fmt.Errorf("connecting to %s: %w", path, err))
	}
	con := &serialConsole{cur: rw, lock: lock, closed: make(chan struct{})}
	if kind == "unix" {
		// QEMU makes a new socket each time the domain starts; a console
		// that survives power cycles, like a BMC's SOL, reconnects.
		con.redial = dial
	}
	return con, nil
}

// serialConsole is a domain's serial port held under the console lock.
type serialConsole struct {
	lock   net.Listener
	redial func() (io.ReadWriteCloser, error) // nil: no reconnecting (pty)

	mu     sync.Mutex
	cur    io.ReadWriteCloser
	once   sync.Once
	closed chan struct{}
}

func (s *serialConsole) conn() io.ReadWriteCloser { s.mu.Lock(); defer s.mu.Unlock(); return s.cur }

func (s *serialConsole) Read(p []byte) (int, error) {
	for {
		cur := s.conn()
		n, err := cur.Read(p)
		if n > 0 || err == nil {
			return n, nil
		}
		select {
		case <-s.closed:
			return 0, io.EOF
		default:
		}
		if s.redial == nil {
			return 0, err
		}
		cur.Close()
		for {
			next, derr := s.redial()
			if derr == nil {
				s.mu.Lock()
				s.cur = next
				s.mu.Unlock()
				break
			}
			select {
			case <-s.closed:
				return 0, io.EOF
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// Write sends to the port; keys typed while the domain restarts are lost,
// as on a real serial line, rather than ending the console.
func (s *serialConsole) Write(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	n, err := s.conn().Write(p)
	if err != nil && s.redial != nil {
		return len(p), nil
	}
	return n, err
}

func (s *serialConsole) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.conn().Close()
		s.lock.Close()
	})
	return err
}

func (c *libvirtController) Close() error { return nil }
