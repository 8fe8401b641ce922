package bmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"
)

// openConsoles refuses a second console on the same BMC inside this process
// before the BMC has to; the BMC refuses one from another process
// ("payload already active").
var openConsoles = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// Console activates the SOL payload in a session of its own and relays it
// as a byte stream until Close. Bytes are passed unchanged: escape
// sequences (~.) are the caller's business.
func (c *ipmiController) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	key := c.key
	openConsoles.Lock()
	if openConsoles.m[key] {
		openConsoles.Unlock()
		return nil, c.fail("opening the serial console", ErrConsoleBusy)
	}
	openConsoles.m[key] = true
	openConsoles.Unlock()
	release := func() {
		openConsoles.Lock()
		delete(openConsoles.m, key)
		openConsoles.Unlock()
	}

	var cl *client.Client
	var inbound uint16
	err := c.do(ctx, "opening the serial console", func(tctx context.Context, fresh *client.Client) error {
		c.mu.Lock()
		proto := c.proto
		c.mu.Unlock()
		if proto == protoLan {
			return permanentError{errors.New("serial over LAN needs IPMI 2.0 (lanplus); this BMC speaks only IPMI 1.5")}
		}
		res, err := fresh.ActivatePayload(tctx, &transport.ActivatePayloadRequest{
			PayloadType: types.PayloadTypeSOL, PayloadInstance: 1,
		})
		if cc, ok := completionCode(err); ok && cc == types.CodeActivatePayloadAlreadyActive {
			return permanentError{ErrConsoleBusy}
		}
		if err != nil {
			return fmt.Errorf("activate SOL payload: %w", err)
		}
		cl, inbound = fresh, res.InboundPayloadSize
		return nil
	}, keepSession)
	if err != nil {
		release()
		return nil, err
	}

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	con := &ipmiConsole{in: inW, out: outR, cancel: cancel, done: make(chan struct{}), brk: make(chan solBreakReq)}
	keys := make(chan []byte)
	go func() {
		// Keystrokes as they come, a read at a time, into the stream's loop.
		defer close(keys)
		for {
			buf := make([]byte, 256)
			n, err := inR.Read(buf)
			if n > 0 {
				select {
				case keys <- buf[:n]:
				case <-sctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	con.stop = func() {
		cancel()
		inR.Close()
		<-con.done
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = cl.DeactivatePayload(dctx, &transport.DeactivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
		dcancel()
		_ = closeQuietly(cl)
		<-c.sem // the session slot held since do
		c.mu.Lock()
		if c.console == con {
			c.console = nil
		}
		c.mu.Unlock()
		release()
	}
	go func() {
		defer close(con.done)
		err := newSOLStream(cl, outW, inbound).run(sctx, keys, con.brk)
		if err == nil || sctx.Err() != nil {
			err = io.EOF
		} else {
			err = c.fail("serial console", err)
		}
		outW.CloseWithError(err)
		inR.CloseWithError(err) // writes fail from now on instead of blocking
	}()
	c.mu.Lock()
	c.console = con
	c.mu.Unlock()
	return con, nil
}

type ipmiConsole struct {
	in     *io.PipeWriter
	out    *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	brk    chan solBreakReq
	once   sync.Once
	stop   func()
}

func (s *ipmiConsole) Read(p []byte) (int, error)  { return s.out.Read(p) }
func (s *ipmiConsole) Write(p []byte) (int, error) { return s.in.Write(p) }

// SendBreak sends a serial BREAK to the node (Linux reads it as the magic
// SysRq key when the next key follows within 5 s).
func (s *ipmiConsole) SendBreak(ctx context.Context) error {
	req := solBreakReq{done: make(chan error, 1)}
	select {
	case s.brk <- req:
	case <-s.done:
		return errors.New("sending a BREAK: the console is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeactivateConsole ends the SOL payload whoever holds it, as ipmitool's
// sol deactivate does: a console left active by a client that died keeps
// the node's console busy until the BMC's session timeout otherwise. A
// payload that is not active is no error.
func (c *ipmiController) DeactivateConsole(ctx context.Context) error {
	return c.do(ctx, "deactivating the serial console", func(tctx context.Context, cl *client.Client) error {
		_, err := cl.DeactivatePayload(tctx, &transport.DeactivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
		if cc, ok := completionCode(err); ok && cc == types.CodeDeactivatePayloadAlreadyDeactivated {
			return nil
		}
		if cc, ok := completionCode(err); ok && cc == types.CodeInsufficientPrivilege {
			return permanentError{fmt.Errorf("the BMC refused: the console belongs to another user and ipmi_user may not end it: %w", err)}
		}
		if err != nil {
			return fmt.Errorf("deactivate SOL payload: %w", err)
		}
		return nil
	})
}

// Close deactivates the payload and ends the session, so the node's console
// is free for the next user at once rather than after the BMC's timeout.
func (s *ipmiConsole) Close() error {
	s.once.Do(func() {
		s.in.Close()
		s.out.Close()
		s.stop()
	})
	return nil
}
