package bmc

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
)

// ipmi15Relay stands in front of a BMC server on loopback and drops every
// RMCP+ packet (session auth type 6), so the server looks like a BMC that
// speaks only IPMI 1.5: it answers the 1.5-framed capabilities request and
// nothing of lanplus.
func ipmi15Relay(t *testing.T, upstream string) string {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		t.Fatal(err)
	}
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
			if n > 4 && buf[4] == 0x06 { // RMCP+ session
				continue
			}
			mu.Lock()
			c, ok := conns[from.String()]
			if !ok {
				c, err = net.DialUDP("udp", nil, up)
				if err != nil {
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
						front.WriteToUDP(b[:n], to)
					}
				}(c, from)
			}
			mu.Unlock()
			c.Write(buf[:n])
		}
	}()
	return front.LocalAddr().String()
}

func TestIPMI15FallbackWhenTheBMCOpensNoLanplusSession(t *testing.T) {
	tb := startGoIPMI(t, true)
	addr := ipmi15Relay(t, tb.addr)
	opts := testOpts(t, nil)
	opts.AllowIPMI15 = true // on request only
	opts.Protocols = &MemoryProtocols{}
	c := openTest(t, "ipmi://"+addr, opts)
	ctx := context.Background()

	if err := c.Power(ctx, ActionOn); err != nil {
		t.Fatal(err)
	}
	if s, err := c.PowerState(ctx); err != nil || s != PowerOn {
		t.Fatalf("PowerState over IPMI 1.5 = %q, %v", s, err)
	}
	if v, err := c.SetBoot(ctx, BootFlags{Device: DevicePXE, Persistent: true, EFI: true}); err != nil || !v {
		t.Fatalf("SetBoot over IPMI 1.5 = %v, %v", v, err)
	}
	d, err := c.Diag(ctx)
	if err != nil || d.Protocol != "IPMI 1.5 lan" {
		t.Fatalf("Diag = %+v, %v; want protocol IPMI 1.5", d, err)
	}
	if _, err := c.Console(ctx); err == nil || !strings.Contains(err.Error(), "needs IPMI 2.0") {
		t.Fatalf("console over IPMI 1.5: err = %v", err)
	}
}
