package rogue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Report is what an attack got: answers by HTTP status, and what must stay
// zero against a sound Racker.
type Report struct {
	Requests int         `json:"requests"`
	Codes    map[int]int `json:"codes"`
	Errors   int         `json:"errors"` // no answer (refused, reset, timed out)
	// Ignition counts answers that were an Ignition config; Tokens,
	// answers that carried a node token (install.sh's TOKEN=, an
	// Authorization header in a config); Accepted, callbacks answered 2xx.
	Ignition int `json:"ignition"`
	Tokens   int `json:"tokens"`
	Accepted int `json:"accepted"`
	// Views counts management views (nodes, events, metrics) served.
	Views int `json:"views"`
	// Packets counts DHCP packets sent.
	Packets int `json:"packets,omitempty"`
}

func newReport() *Report { return &Report{Codes: map[int]int{}} }

// Callback kinds a node may send (docs/boot-contract.md §5).
var callbackKinds = []string{"installing", "installed", "booted", "failed"}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (r *Report) do(ctx context.Context, method, url string, body []byte, hdr map[string]string) (int, []byte) {
	r.Requests++
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		r.Errors++
		return 0, nil
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Errors++
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	r.Codes[resp.StatusCode]++
	return resp.StatusCode, b
}

// FetchConfigs asks, for every MAC, for everything a node may be served —
// its iPXE script, its install and boot configs (without a token and with a
// made-up one) — and for the management views.
func FetchConfigs(ctx context.Context, server string, macs []string) *Report {
	r := newReport()
	forged := map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 43)}
	for _, mac := range macs {
		r.do(ctx, "GET", server+"/ipxe?mac="+mac, nil, nil)
		for _, phase := range []string{"install", "boot"} {
			for _, hdr := range []map[string]string{nil, forged} {
				code, body := r.do(ctx, "GET", server+"/ignition?mac="+mac+"&phase="+phase, nil, hdr)
				r.inspect(code, body)
			}
		}
	}
	for _, view := range []string{"/api/v1/nodes", "/api/v1/events?after=0", "/metrics"} {
		if code, _ := r.do(ctx, "GET", server+view, nil, nil); code == http.StatusOK {
			r.Views++
		}
	}
	return r
}

// inspect counts Ignition configs and tokens in an answer.
func (r *Report) inspect(code int, body []byte) {
	if code != http.StatusOK {
		return
	}
	var cfg struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
		Storage struct {
			Files []struct {
				Contents struct {
					Source string `json:"source"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if json.Unmarshal(body, &cfg) == nil && strings.HasPrefix(cfg.Ignition.Version, "3.") {
		r.Ignition++
	}
	// The token travels in install.sh (TOKEN=…, a base64 data URL inside
	// the config), in the boot stub's httpHeaders and in the booted unit.
	texts := [][]byte{body}
	for _, f := range cfg.Storage.Files {
		if b64, ok := strings.CutPrefix(f.Contents.Source, "data:;base64,"); ok {
			if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
				texts = append(texts, b)
			}
		}
	}
	for _, t := range texts {
		if bytes.Contains(t, []byte("Bearer ")) || bytes.Contains(t, []byte("TOKEN=")) {
			r.Tokens++
			return
		}
	}
}

// Callbacks posts every callback kind for every MAC, without a token and
// with a made-up one.
func Callbacks(ctx context.Context, server string, macs []string) *Report {
	r := newReport()
	for _, mac := range macs {
		for _, kind := range callbackKinds {
			body, _ := json.Marshal(map[string]string{"mac": mac, "event": kind, "message": "rogue"})
			for _, tok := range []string{"", strings.Repeat("B", 43)} {
				hdr := map[string]string{"Content-Type": "application/json"}
				if tok != "" {
					hdr["Authorization"] = "Bearer " + tok
				}
				if code, _ := r.do(ctx, "POST", server+"/api/v1/events", body, hdr); code >= 200 && code < 300 {
					r.Accepted++
				}
			}
		}
	}
	return r
}

// JunkHTTP sends n requests the boot services never expect: random paths,
// bad methods, oversized headers, and raw garbage on a TCP connection.
func JunkHTTP(ctx context.Context, server string, n int) *Report {
	r := newReport()
	host := strings.TrimPrefix(server, "http://")
	for i := 0; i < n && ctx.Err() == nil; i++ {
		switch i % 4 {
		case 0:
			r.do(ctx, "GET", server+"/"+randomHex(12)+"?mac="+randomHex(40), nil, nil)
		case 1:
			r.do(ctx, "PUT", server+"/api/v1/nodes/"+randomHex(6)+"/reinstall", []byte(randomHex(100)), nil)
		case 2:
			r.do(ctx, "GET", server+"/ipxe?mac="+randomMAC().String(), nil, map[string]string{"X-Junk": strings.Repeat("j", 8000)})
		default:
			r.Requests++
			c, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				r.Errors++
				continue
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte(randomHex(200) + "\r\n\r\n"))
			io.Copy(io.Discard, io.LimitReader(c, 4096))
			c.Close()
		}
	}
	return r
}

// DHCPRequests sends a DHCPREQUEST in each MAC's name (chaddr), asking for the address given with it when there is one
// (MAC=IP), as a client renewing its lease would.
func DHCPRequests(server netip.Addr, pairs []string) (*Report, error) {
	conn, err := nclient4.NewRawUDPConn(Iface, dhcpv4.ClientPort)
	if err != nil {
		return nil, fmt.Errorf("while opening a raw DHCP socket on %s: %w", Iface, err)
	}
	defer conn.Close()
	r := newReport()
	for _, p := range pairs {
		macS, ipS, _ := strings.Cut(p, "=")
		mac, err := net.ParseMAC(macS)
		if err != nil {
			return nil, fmt.Errorf("MAC %q: %w", macS, err)
		}
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithBroadcast(true),
			dhcpv4.WithUserClass("iPXE", false)}
		if ip, err := netip.ParseAddr(ipS); err == nil {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server.AsSlice())))
		}
		req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...)
		if err != nil {
			return nil, err
		}
		if err := send(conn, req); err != nil {
			return nil, err
		}
		r.Packets++
	}
	return r, nil
}

// FloodDiscovers sends n DISCOVERs, each from a new random MAC, as fast as
// the socket takes them.
func FloodDiscovers(ctx context.Context, n int) (*Report, error) {
	conn, err := nclient4.NewRawUDPConn(Iface, dhcpv4.ClientPort)
	if err != nil {
		return nil, fmt.Errorf("while opening a raw DHCP socket on %s: %w", Iface, err)
	}
	defer conn.Close()
	r := newReport()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		req, err := dhcpv4.NewDiscovery(randomMAC(), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001:"+randomHex(80))))
		if err != nil {
			return nil, err
		}
		if err := send(conn, req); err != nil {
			r.Errors++
			time.Sleep(time.Millisecond) // the socket's buffer is full: let it drain
			continue
		}
		r.Packets++
	}
	return r, nil
}

func send(conn net.PacketConn, req *dhcpv4.DHCPv4) error {
	_, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort})
	return err
}

func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&0xfc | 0x02 // unicast, locally administered
	return b
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return fmt.Sprintf("%x", b)[:n]
}
