package dhcp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReceiveBuffer is the socket receive buffer Listen asks for: a rack
// powering on sends a burst of DISCOVERs at once, and the kernel's default
// (~200 KiB) drops them at a few hundred clients.
const ReceiveBuffer = 8 << 20

// Listen opens a DHCP server socket (UDP port, 67 in production) bound to
// ifname: SO_BINDTODEVICE makes the server hear and answer only the PXE
// interface, never the public network. SO_REUSEADDR lets `racker factory
// discover` listen beside a running server.
func Listen(ctx context.Context, ifname string, port int) (*net.UDPConn, error) {
	var serr error
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if ifname != "" {
				if serr = unix.SetsockoptString(s, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); serr != nil {
					serr = fmt.Errorf("binding to interface %s: %w", ifname, serr)
					return
				}
			}
			for _, o := range []int{unix.SO_REUSEADDR, unix.SO_BROADCAST} {
				if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			// FORCE passes the rmem_max limit (needs CAP_NET_ADMIN); without
			// the capability fall back to what the limit allows.
			if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ReceiveBuffer) != nil {
				unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, ReceiveBuffer)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("opening the DHCP socket on %s port %d: %w", ifname, port, err)
	}
	return pc.(*net.UDPConn), nil
}
