package bmc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// downgradeRelay stands between the client and a BMC on loopback, as a
// host that took the BMC's address would. While attack is on it drops
// every RMCP+ packet and rewrites the BMC's capabilities answer to offer
// straight-password authentication only, the classic downgrade. It keeps
// every byte the client sent, to look for the password in.
type downgradeRelay struct {
	addr   string
	attack atomic.Bool
	mu     sync.Mutex
	sent   []byte
}

func (r *downgradeRelay) wire() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.sent...)
}

func startDowngradeRelay(t *testing.T, upstream string) *downgradeRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := net.ResolveUDPAddr("udp", upstream)
	r := &downgradeRelay{addr: front.LocalAddr().String()}
	var mu sync.Mutex
	conns := map[string]*net.UDPConn{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		front.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.sent = append(r.sent, buf[:n]...)
			r.mu.Unlock()
			if r.attack.Load() && n > 4 && buf[4] == authRMCPPlus {
				continue
			}
			if r.attack.Load() {
				if reply := fakeChallenge(buf[:n]); reply != nil {
					front.WriteToUDP(reply, from) // the relay plays the BMC from here on
					continue
				}
			}
			mu.Lock()
			c, ok := conns[from.String()]
			if !ok {
				if c, err = net.DialUDP("udp", nil, up); err != nil {
					mu.Unlock()
					continue
				}
				conns[from.String()] = c
				wg.Add(1)
				go func(c *net.UDPConn, to *net.UDPAddr) {
					defer wg.Done()
					b := make([]byte, 4096)
					for {
						n, err := c.Read(b)
						if err != nil {
							return
						}
						if r.attack.Load() {
							passwordOnly(b[:n])
						}
						front.WriteToUDP(b[:n], to)
					}
				}(c, from)
			}
			mu.Unlock()
			c.Write(buf[:n])
		}
	}()
	return r
}

// passwordOnly rewrites a Get Channel Authentication Capabilities answer
// (IPMI 1.5 framing, no session auth) to offer straight password only,
// fixing the message's second checksum.
func passwordOnly(b []byte) {
	const msg = 14 // RMCP 4 + auth type 1 + sequence 4 + session id 4 + length 1
	if len(b) < msg+10 || b[4] != authNone || b[msg+1]>>2 != 0x07 || b[msg+5] != 0x38 || b[msg+6] != 0 {
		return
	}
	b[msg+8] = b[msg+8]&0x80 | 0x10 // IPMI 2.0 bit kept; password only
	var sum byte
	for _, x := range b[msg+3 : len(b)-1] {
		sum += x
	}
	b[len(b)-1] = -sum
}

// fakeChallenge answers a Get Session Challenge request (IPMI 1.5, no
// session auth) itself, as an attacker in the BMC's place does, so that a
// client willing to use straight-password authentication sends its
// Activate Session, password and all.
func fakeChallenge(req []byte) []byte {
	const msg = 14
	if len(req) < msg+7 || req[4] != authNone || req[msg+1]>>2 != 0x06 || req[msg+5] != 0x39 {
		return nil
	}
	m := []byte{req[msg+3], (0x06+1)<<2 | req[msg+4]&3, 0, req[msg], req[msg+4]&0xfc | req[msg+1]&3, 0x39, 0x00,
		0x11, 0x22, 0x33, 0x44} // temporary session id
	m = append(m, bytes.Repeat([]byte{0xaa}, 16)...) // challenge
	m[2] = -(m[0] + m[1])
	var sum byte
	for _, x := range m[3:] {
		sum += x
	}
	m = append(m, -sum)
	out := []byte{0x06, 0x00, 0xff, 0x07, authNone, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(m))}
	return append(out, m...)
}

// TestNoDowngradeAfterLanplusWorked: a BMC answered lanplus once; later a
// relay drops RMCP+ and offers straight-password IPMI 1.5. A new
// controller for the same BMC (each operation opens one) must refuse, even
// with IPMI 1.5 allowed, and the password bytes must never appear on the
// wire.
func TestNoDowngradeAfterLanplusWorked(t *testing.T) {
	tb := startGoIPMI(t, false)
	relay := startDowngradeRelay(t, tb.addr)
	opts := testOpts(t, nil)
	opts.Protocols = &FileProtocols{Path: filepath.Join(t.TempDir(), ProtocolsFile)}
	opts.AllowIPMI15 = true
	ctx := context.Background()
	if _, err := openTest(t, "ipmi://"+relay.addr, opts).PowerState(ctx); err != nil {
		t.Fatalf("lanplus through the relay: %v", err)
	}
	relay.attack.Store(true)
	_, err := openTest(t, "ipmi://"+relay.addr, opts).PowerState(ctx)
	if bytes.Contains(relay.wire(), []byte(testPassword)) {
		t.Error("the BMC password went over the wire in clear")
	}
	if err == nil || !errors.Is(err, ErrDowngrade) {
		t.Fatalf("PowerState after the downgrade: %v, want ErrDowngrade", err)
	}
}

// TestIPMI15NeedsOptInAndNeverSendsThePassword: a BMC that never spoke
// lanplus gets IPMI 1.5 only with AllowIPMI15, and even then a BMC (or a
// relay) offering straight-password authentication gets no password.
func TestIPMI15NeedsOptInAndNeverSendsThePassword(t *testing.T) {
	tb := startGoIPMI(t, false)
	relay := startDowngradeRelay(t, tb.addr)
	relay.attack.Store(true)
	ctx := context.Background()
	opts := testOpts(t, nil)
	opts.Protocols = &MemoryProtocols{}
	if _, err := openTest(t, "ipmi://"+relay.addr, opts).PowerState(ctx); err == nil {
		t.Fatal("IPMI 1.5 used without the opt-in")
	}
	opts.AllowIPMI15 = true
	_, err := openTest(t, "ipmi://"+relay.addr, opts).PowerState(ctx)
	if bytes.Contains(relay.wire(), []byte(testPassword)) {
		t.Error("the BMC password went over the wire in clear")
	}
	if err == nil || !errors.Is(err, ErrDowngrade) {
		t.Fatalf("straight-password IPMI 1.5: %v, want ErrDowngrade", err)
	}
}
