package dhcp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Seen is a MAC that asked for DHCP, as Watch reports it.
type Seen struct {
	MAC         string
	VendorClass string   // option 60: "PXEClient:…", "HTTPClient…", a BMC's own
	UserClass   string   // option 77: "iPXE"
	Arch        int      // option 93, -1 when absent
	Hostname    string   // option 12
	Types       []string // message types seen, in order of first appearance
	Count       int
	First, Last time.Time
}

// Netboot says whether the sender looks like netboot firmware (a node's
// primary NIC) rather than a BMC or an OS.
func (s Seen) Netboot() bool {
	return strings.HasPrefix(s.VendorClass, "PXEClient") || strings.HasPrefix(s.VendorClass, "HTTPClient") ||
		s.UserClass == "iPXE" || s.Arch >= 0
}

// Watch listens on conn without ever answering and calls seen each time a
// client sends a request, with everything learnt so far about its MAC. It
// returns when ctx ends (nil) or the socket fails. It is what `racker
// factory discover` runs to draft a new rack's nodes.csv.
func Watch(ctx context.Context, conn net.PacketConn, seen func(Seen)) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	all := map[string]*Seen{}
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listening for DHCP requests on %s: %w", conn.LocalAddr(), err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
			continue
		}
		mac := req.ClientHWAddr.String()
		s := all[mac]
		now := time.Now()
		if s == nil {
			s = &Seen{MAC: mac, Arch: -1, First: now}
			all[mac] = s
		}
		s.Count++
		s.Last = now
		if vc := req.ClassIdentifier(); vc != "" {
			s.VendorClass = vc
		}
		if uc := req.UserClass(); len(uc) > 0 {
			s.UserClass = strings.Join(uc, ",")
		}
		if a := req.ClientArch(); len(a) > 0 {
			s.Arch = int(a[0])
		}
		if h := req.HostName(); h != "" {
			s.Hostname = h
		}
		t := req.MessageType().String()
		found := false
		for _, x := range s.Types {
			found = found || x == t
		}
		if !found {
			s.Types = append(s.Types, t)
		}
		seen(*s)
	}
}
