package vbmc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/hal"
)

// serialConsole is the SOL side of the VM's serial port, a unix socket QEMU
// listens on. Like a real BMC's UART it is there whether the machine runs
// or not: a session can be active before power-on and across reboots, and
// the socket is (re)dialled whenever QEMU listens again. One session at a
// time, as a serial port cannot be shared.
type serialConsole struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	open *consoleConn
}

// redialEvery bounds how often a dead console socket is dialled again.
const redialEvery = 100 * time.Millisecond

// consoleBuffer bounds output kept while the remote console lags; older
// bytes are dropped, as a UART FIFO would overrun.
const consoleBuffer = 64 << 10

func newSerialConsole(path string, log *slog.Logger) *serialConsole {
	return &serialConsole{path: path, log: log}
}

var errConsoleBusy = errors.New("the serial console is already in use by another SOL session")

// Open attaches a SOL session; a second one is refused until the first ends.
func (s *serialConsole) Open(context.Context) (hal.ConsoleConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open != nil {
		return nil, errConsoleBusy
	}
	c := &consoleConn{parent: s, done: make(chan struct{})}
	s.open = c
	go c.pump()
	s.log.Info("SOL session attached", "console", s.path)
	return c, nil
}

func (s *serialConsole) release(c *consoleConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == c {
		s.open = nil
		s.log.Info("SOL session detached", "console", s.path)
	}
}

// consoleConn is one SOL session's view of the serial port. A goroutine
// reads the socket into a buffer, because go-ipmi's SOL pump must never
// block on ReadAvailable.
type consoleConn struct {
	parent *serialConsole
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	sock net.Conn
	out  []byte
}

func (c *consoleConn) pump() {
	for {
		select {
		case <-c.done:
			return
		default:
		}
		sock, err := net.DialTimeout("unix", c.parent.path, time.Second)
		if err != nil {
			// The machine is off or QEMU has not bound the socket yet.
			select {
			case <-c.done:
				return
			case <-time.After(redialEvery):
			}
			continue
		}
		c.mu.Lock()
		c.sock = sock
		c.mu.Unlock()
		select {
		case <-c.done: // closed while dialling
			sock.Close()
			return
		default:
		}
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if n > 0 {
				c.mu.Lock()
				c.out = append(c.out, buf[:n]...)
				if over := len(c.out) - consoleBuffer; over > 0 {
					c.out = c.out[over:]
				}
				c.mu.Unlock()
			}
			if err != nil {
				break // QEMU went away (power off, reboot): dial again
			}
		}
		c.mu.Lock()
		c.sock = nil
		c.mu.Unlock()
		sock.Close()
	}
}

func (c *consoleConn) ReadAvailable(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// Write sends keystrokes to the guest; with the machine off they are lost,
// as on a real serial line.
func (c *consoleConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	sock := c.sock
	c.mu.Unlock()
	if sock == nil {
		return len(p), nil
	}
	// A write error means QEMU just went away (reboot, power off): the
	// keystrokes are lost like on a dead line, and the session goes on.
	_ = sock.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := sock.Write(p); err != nil {
		c.parent.log.Debug("keystrokes lost on the serial console", "console", c.parent.path, "err", err)
	}
	return len(p), nil
}

// SendBreak: a unix socket carries no BREAK condition, so the VM never
// sees one; the request is logged, as a BMC's event log would show it.
func (c *consoleConn) SendBreak(context.Context) error {
	c.parent.log.Info("serial BREAK requested over SOL; the VM's console socket cannot carry it", "console", c.parent.path)
	return hal.ErrNotSupported
}

func (c *consoleConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.mu.Lock()
		if c.sock != nil {
			c.sock.Close()
		}
		c.mu.Unlock()
		c.parent.release(c)
	})
	return nil
}
