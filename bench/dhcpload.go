package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// dhcpLoad is a DHCP load generator: many client MACs on one raw socket,
// each exchange a full DISCOVER/OFFER/REQUEST/ACK with the broadcast flag set
// (as iPXE does). It must be created inside the client's network namespace.
type dhcpLoad struct {
	fd      int
	ifindex int
	pending sync.Map // xid → chan *dhcpv4.DHCPv4
	closed  atomic.Bool
}

// PXE ROMs wait 4 s before they send their DHCPDISCOVER again (the PXE
// specification's first timeout; iPXE starts lower and backs off). The
// load generator's client waits dhcpTry for each answer and resends the
// same message (same transaction) when it times out, as firmware does, up
// to dhcpBudget: an exchange not done by then is lost, one that needed
// resends is only late. Both are counted apart.
const (
	dhcpTry    = time.Second
	dhcpBudget = 4 * time.Second
)

// loadResult is one run at one concurrency.
type loadResult struct {
	Concurrency int
	Exchanges   int           // completed within dhcpBudget
	Lost        int           // not completed within dhcpBudget
	Timeouts    int           // dhcpTry waits that ended in a resend
	Elapsed     time.Duration // of the run
	P50, P99    time.Duration // of completed exchanges, resends included
	Cost        perfCost      // the server's, when counted
}

func (r loadResult) Rate() float64 { return float64(r.Exchanges) / r.Elapsed.Seconds() }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func newDHCPLoad(iface string) (*dhcpLoad, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("while finding the load generator's interface %s: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return nil, fmt.Errorf("while opening a raw socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("while binding the raw socket to %s: %w", iface, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20)
	// A receive timeout lets the reader notice Close.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	l := &dhcpLoad{fd: fd, ifindex: ifi.Index}
	go l.receive()
	return l, nil
}

func (l *dhcpLoad) Close() {
	l.closed.Store(true)
	unix.Close(l.fd)
}

// receive hands each DHCP reply to the exchange waiting for its xid.
func (l *dhcpLoad) receive() {
	buf := make([]byte, 4096)
	for !l.closed.Load() {
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		payload, ok := udpPayload(buf[:n], 68)
		if !ok {
			continue
		}
		msg, err := dhcpv4.FromBytes(payload)
		if err != nil {
			continue
		}
		if ch, ok := l.pending.Load(msg.TransactionID); ok {
			select {
			case ch.(chan *dhcpv4.DHCPv4) <- msg:
			default:
			}
		}
	}
}

// udpPayload returns the payload of an IPv4/UDP packet to dstPort.
func udpPayload(p []byte, dstPort uint16) ([]byte, bool) {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
		return nil, false
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 || binary.BigEndian.Uint16(p[ihl+2:]) != dstPort {
		return nil, false
	}
	end := ihl + int(binary.BigEndian.Uint16(p[ihl+4:]))
	if end > len(p) || end < ihl+8 {
		return nil, false
	}
	return p[ihl+8 : end], true
}

// send broadcasts a DHCP message from 0.0.0.0:68 to 255.255.255.255:67.
func (l *dhcpLoad) send(m *dhcpv4.DHCPv4) error {
	payload := m.ToBytes()
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_UDP
	copy(pkt[16:20], net.IPv4bcast.To4())
	binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
	binary.BigEndian.PutUint16(pkt[20:], 68)
	binary.BigEndian.PutUint16(pkt[22:], 67)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: l.ifindex, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	return unix.Sendto(l.fd, pkt, 0, to)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// exchange runs one DORA for mac, each message resent after each try's
// wait until budget is spent; ok is false when no ACK came within it.
func (l *dhcpLoad) exchange(mac net.HardwareAddr, try, budget time.Duration) (ok bool, timeouts int) {
	disc, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
	if err != nil {
		return false, 0
	}
	ch := make(chan *dhcpv4.DHCPv4, 4)
	l.pending.Store(disc.TransactionID, ch)
	defer l.pending.Delete(disc.TransactionID)
	deadline := time.Now().Add(budget)
	// ask sends m until an answer of type want comes or the budget ends.
	ask := func(m *dhcpv4.DHCPv4, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		for {
			left := time.Until(deadline)
			if left <= 0 || l.send(m) != nil {
				return nil
			}
			if got := await(ch, want, min(try, left)); got != nil {
				return got
			}
			timeouts++
		}
	}
	offer := ask(disc, dhcpv4.MessageTypeOffer)
	if offer == nil {
		return false, timeouts
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true))
	if err != nil {
		return false, timeouts
	}
	return ask(req, dhcpv4.MessageTypeAck) != nil, timeouts
}

func await(ch chan *dhcpv4.DHCPv4, want dhcpv4.MessageType, timeout time.Duration) *dhcpv4.DHCPv4 {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m := <-ch:
			if m.MessageType() == want {
				return m
			}
		case <-t.C:
			return nil
		}
	}
}

// run keeps concurrency exchanges in flight for d, cycling through macs.
func (l *dhcpLoad) run(macs []net.HardwareAddr, concurrency int, d time.Duration) loadResult {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	lost, timeouts := 0, 0
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			myLost, myTimeouts := 0, 0
			for time.Now().Before(deadline) {
				mac := macs[int(next.Add(1)-1)%len(macs)]
				t0 := time.Now()
				ok, to := l.exchange(mac, dhcpTry, dhcpBudget)
				myTimeouts += to
				if ok {
					mine = append(mine, time.Since(t0))
				} else {
					myLost++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			lost += myLost
			timeouts += myTimeouts
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := loadResult{Concurrency: concurrency, Exchanges: len(lat), Lost: lost, Timeouts: timeouts, Elapsed: time.Since(start)}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		r.P50 = lat[len(lat)/2]
		r.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r
}
