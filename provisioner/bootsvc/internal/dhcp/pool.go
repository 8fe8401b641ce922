package dhcp

import (
	"net/netip"
	"sync"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

// offerHold is how long an offered pool address waits for its REQUEST.
const offerHold = time.Minute

// pool hands out addresses to MACs that are not in the plan (--dynamic-pool).
// It takes the upper half of the subnet: the plan numbers nodes and BMCs
// upward from the start of the subnet, so the two never meet in a rack of
// sensible size, and an address the plan holds is skipped anyway.
type pool struct {
	mu       sync.Mutex
	first    netip.Addr
	last     netip.Addr
	next     netip.Addr // where the search for a free address resumes
	reserved map[netip.Addr]bool
	byIP     map[netip.Addr]holder
	byMAC    map[string]netip.Addr
}

type holder struct {
	mac   string // "" for a declined address
	until time.Time
}

func newPool(subnet netip.Prefix, reserved map[netip.Addr]bool, held []leases.Lease) *pool {
	first, last := poolRange(subnet)
	p := &pool{first: first, last: last, next: first, reserved: reserved,
		byIP: map[netip.Addr]holder{}, byMAC: map[string]netip.Addr{}}
	// Leases from before a restart: the same MAC keeps its address, and
	// nobody else gets it while the lease runs.
	for _, l := range held {
		if l.Kind == "pool" && p.inRange(l.IP) && !reserved[l.IP] {
			p.byIP[l.IP] = holder{mac: l.MAC, until: l.Expires}
			p.byMAC[l.MAC] = l.IP
		}
	}
	return p
}

// setReserved replaces the planned addresses the pool must not hand out.
func (p *pool) setReserved(reserved map[netip.Addr]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reserved = reserved
}

// poolRange is the upper half of the subnet's host addresses.
func poolRange(subnet netip.Prefix) (netip.Addr, netip.Addr) {
	a := subnet.Masked().Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	size := uint32(1) << (32 - subnet.Bits())
	return u32addr(base + size/2), u32addr(base + size - 2)
}

func u32addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (p *pool) inRange(ip netip.Addr) bool {
	return ip.IsValid() && ip.Compare(p.first) >= 0 && ip.Compare(p.last) <= 0
}

// free says whether mac may take ip at now.
func (p *pool) free(ip netip.Addr, mac string, now time.Time) bool {
	if !p.inRange(ip) || p.reserved[ip] {
		return false
	}
	h, ok := p.byIP[ip]
	return !ok || h.mac == mac || now.After(h.until)
}

// offer picks an address for mac: the one it holds or held, the one it asks
// for, or the next free one; it is kept for mac for offerHold.
func (p *pool) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pick := netip.Addr{}
	if ip, ok := p.byMAC[mac]; ok && p.free(ip, mac, now) {
		pick = ip
	} else if p.free(requested, mac, now) {
		pick = requested
	} else {
		ip := p.next
		for range p.size() {
			if p.free(ip, mac, now) {
				pick = ip
				break
			}
			if ip = ip.Next(); !p.inRange(ip) {
				ip = p.first
			}
		}
		if !pick.IsValid() {
			return netip.Addr{}, false
		}
		if p.next = pick.Next(); !p.inRange(p.next) {
			p.next = p.first
		}
	}
	p.take(mac, pick, now.Add(offerHold))
	return pick, true
}

// commit gives ip to mac until expires, if it is free for mac at now.
func (p *pool) commit(mac string, ip netip.Addr, now, expires time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.free(ip, mac, now) {
		return false
	}
	p.take(mac, ip, expires)
	return true
}

func (p *pool) take(mac string, ip netip.Addr, until time.Time) {
	if old, ok := p.byMAC[mac]; ok && old != ip {
		if h := p.byIP[old]; h.mac == mac {
			delete(p.byIP, old)
		}
	}
	// The address's previous holder (its lease or offer ran out) loses
	// its claim, so byMAC never outgrows the pool: a flood of random MACs
	// cannot grow it without bound.
	if h, ok := p.byIP[ip]; ok && h.mac != "" && h.mac != mac && p.byMAC[h.mac] == ip {
		delete(p.byMAC, h.mac)
	}
	p.byIP[ip] = holder{mac: mac, until: until}
	p.byMAC[mac] = ip
}

// forget frees what mac holds (a RELEASE, or it took another server's offer).
func (p *pool) forget(mac string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ip, ok := p.byMAC[mac]; ok {
		if h := p.byIP[ip]; h.mac == mac {
			delete(p.byIP, ip)
		}
		delete(p.byMAC, mac)
	}
}

// decline keeps ip away from everyone until until.
func (p *pool) decline(ip netip.Addr, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inRange(ip) {
		if h, ok := p.byIP[ip]; ok && p.byMAC[h.mac] == ip {
			delete(p.byMAC, h.mac)
		}
		p.byIP[ip] = holder{until: until}
	}
}

func (p *pool) size() int {
	a, b := p.first.As4(), p.last.As4()
	f := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	l := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return int(l-f) + 1
}
