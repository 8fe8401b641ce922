package unitd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ControlSocket is where the node's systemctl reaches its PID 1.
const ControlSocket = "/run/unitd/control.sock"

// request and reply are one systemctl call on the control socket: one JSON
// object each way, then the connection closes.
type request struct {
	Args []string `json:"args"`
}

type reply struct {
	Code   int    `json:"code"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

// ListenControl opens the control socket under root (mode 0600: root only).
func ListenControl(root string) (net.Listener, error) {
	p := filepath.Join(root, ControlSocket)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("while creating the control socket's folder: %w", err)
	}
	_ = os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("while opening the control socket %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ServeControl answers systemctl calls until ln closes. Calls run
// concurrently; the manager serialises jobs per unit.
func (m *Manager) ServeControl(ctx context.Context, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("while accepting on the control socket: %w", err)
		}
		go m.handle(ctx, c)
	}
}

func (m *Manager) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		m.Logger.Warn("bad request on the control socket", "err", err)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var out, errb bytes.Buffer
	code := m.Systemctl(ctx, req.Args, &out, &errb)
	_ = json.NewEncoder(c).Encode(reply{Code: code, Stdout: out.String(), Stderr: errb.String()})
}

// CallControl is systemctl's client side: it sends args to the manager
// behind sock and prints its answer.
func CallControl(sock string, args []string, stdout, stderr io.Writer) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintf(stderr, "System has not been booted with unitd as init (PID 1). Can't operate.\nFailed to connect to %s: %v\n", sock, err)
		return 1
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(request{Args: args}); err != nil {
		fmt.Fprintf(stderr, "systemctl: while talking to PID 1: %v\n", err)
		return 1
	}
	var r reply
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		fmt.Fprintf(stderr, "systemctl: while reading PID 1's answer: %v\n", err)
		return 1
	}
	io.WriteString(stdout, r.Stdout)
	io.WriteString(stderr, r.Stderr)
	return r.Code
}
