package dhcp

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

// Boot files, relative to the TFTP root, and HTTP paths (docs/boot-contract.md §1).
const (
	BIOSBootFile = "undionly.kpxe"
	EFIBootFile  = "ipxe.efi"
	iPXEScript   = "/boot.ipxe"
	httpBootPath = "/assets/ipxe/ipxe.efi"
)

// dropRetired is the drop reason for a refused (retired) MAC.
const dropRetired = "retired"

// decision is what the server does with one request: the reply to send (nil:
// stay silent), the lease to make durable before sending it, and what to
// record. It is computed by answer without touching a socket or the disk.
type decision struct {
	reply *dhcpv4.DHCPv4
	// lease, when set, is committed (and fsynced) before reply is sent.
	lease *leases.Lease
	// release names a MAC whose lease a DHCPRELEASE gave back.
	release string
	// unknown: the MAC is not in the plan (a machine_seen event).
	unknown bool
	// drop says why there is no reply, for metrics ("" when replying).
	drop string
	kind string // node, bmc or pool
}

// responder answers requests from the plan's reservations and, when
// enabled, the dynamic pool. Reservations never change while serving, so
// they are read without locks; the pool locks itself.
type responder struct {
	cfg    Config
	byMAC  map[string]Reservation // key: the 6 raw bytes of the MAC
	refuse map[string]bool        // retired MACs, by their 6 raw bytes
	pool   *pool                  // nil: unknown MACs get nothing
	router []net.IP
	dns    []net.IP
	mask   net.IPMask
	server net.IP
}

func newResponder(cfg Config, held []leases.Lease) *responder {
	return buildResponder(cfg, func(reserved map[netip.Addr]bool) *pool {
		return newPool(cfg.Subnet, reserved, held)
	})
}

// withReservations is r with the reservations of cfg; the pool and its
// leases carry over, and stay clear of the new planned addresses.
func (r *responder) withReservations(cfg Config) *responder {
	return buildResponder(cfg, func(reserved map[netip.Addr]bool) *pool {
		if r.pool != nil {
			r.pool.setReserved(reserved)
		}
		return r.pool
	})
}

func buildResponder(cfg Config, makePool func(reserved map[netip.Addr]bool) *pool) *responder {
	r := &responder{cfg: cfg, byMAC: make(map[string]Reservation, len(cfg.Reservations)),
		server: net.IP(cfg.ServerIP.AsSlice()),
		mask:   net.CIDRMask(cfg.Subnet.Bits(), 32)}
	reserved := map[netip.Addr]bool{cfg.ServerIP: true}
	r.refuse = make(map[string]bool, len(cfg.Refused))
	for _, m := range cfg.Refused {
		if hw, err := net.ParseMAC(m); err == nil {
			r.refuse[string(hw)] = true
		}
	}
	for _, res := range cfg.Reservations {
		hw, err := net.ParseMAC(res.MAC)
		if err != nil || len(hw) != 6 {
			continue // Config.check refused these already
		}
		r.byMAC[string(hw)] = res
		reserved[res.IP] = true
	}
	if cfg.Router.IsValid() {
		r.router = []net.IP{cfg.Router.AsSlice()}
	}
	for _, d := range cfg.DNS {
		r.dns = append(r.dns, d.AsSlice())
	}
	if cfg.DynamicPool {
		r.pool = makePool(reserved)
	}
	return r
}

// answer decides what to do with one request received at now.
func (r *responder) answer(req *dhcpv4.DHCPv4, now time.Time) decision {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return decision{drop: "not_a_request"}
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return decision{drop: "not_ethernet"}
	}
	if r.refuse[string(req.ClientHWAddr)] {
		// A machine that left the rack: silence, whatever it asks, so
		// it neither takes an address nor netboots (not even from the
		// pool), and a DHCPRELEASE of it changes nothing.
		return decision{drop: dropRetired}
	}
	mac := req.ClientHWAddr.String()
	res, known := r.byMAC[string(req.ClientHWAddr)]
	kind := res.Kind
	if !known {
		kind = "pool"
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		var ip netip.Addr
		switch {
		case known:
			ip = res.IP
		case r.pool != nil:
			var ok bool
			if ip, ok = r.pool.offer(mac, addrOf(req.RequestedIPAddress()), now); !ok {
				return decision{unknown: true, drop: "pool_full"}
			}
		default:
			return decision{unknown: true, drop: "unknown_mac"}
		}
		return decision{reply: r.reply(req, dhcpv4.MessageTypeOffer, ip, res), unknown: !known, kind: kind}

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(r.server) {
			if !known && r.pool != nil {
				r.pool.forget(mac) // the client took another server's offer
			}
			return decision{drop: "other_server", unknown: !known}
		}
		want := addrOf(req.RequestedIPAddress())
		if !want.IsValid() {
			want = addrOf(req.ClientIPAddr) // renewing or rebinding
		}
		expires := now.Add(r.cfg.LeaseTime)
		switch {
		case known:
			if want != res.IP {
				return decision{reply: r.nak(req, "address "+want.String()+" is not this machine's"), kind: kind}
			}
		case r.pool != nil:
			if !r.pool.commit(mac, want, now, expires) {
				return decision{reply: r.nak(req, "address "+want.String()+" is not available"), unknown: true, kind: kind}
			}
		default:
			return decision{unknown: true, drop: "unknown_mac"}
		}
		return decision{reply: r.reply(req, dhcpv4.MessageTypeAck, want, res), unknown: !known, kind: kind,
			lease: &leases.Lease{MAC: mac, IP: want, Expires: expires, Kind: kind}}

	case dhcpv4.MessageTypeRelease:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(r.server) {
			return decision{drop: "other_server"}
		}
		if !known && r.pool != nil {
			r.pool.forget(mac)
		}
		return decision{release: mac, drop: "release", kind: kind}

	case dhcpv4.MessageTypeDecline:
		// Someone else uses the address: keep it out of the pool for a
		// lease time. A reservation cannot move, so a declined planned
		// address only gets logged (by the server) for a human to fix.
		if r.pool != nil {
			r.pool.decline(addrOf(req.RequestedIPAddress()), now.Add(r.cfg.LeaseTime))
		}
		return decision{drop: "decline", unknown: !known, kind: kind}

	case dhcpv4.MessageTypeInform:
		if !known {
			return decision{unknown: true, drop: "unknown_mac"}
		}
		ack := r.reply(req, dhcpv4.MessageTypeAck, netip.Addr{}, res)
		ack.YourIPAddr = net.IPv4zero
		ack.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		ack.Options.Del(dhcpv4.OptionRenewTimeValue)
		ack.Options.Del(dhcpv4.OptionRebindingTimeValue)
		return decision{reply: ack, kind: kind}
	}
	return decision{drop: "unsupported_type"}
}

// reply builds an OFFER or ACK giving ip, with the boot file when the
// client is a PXE firmware, iPXE or a UEFI HTTP boot client.
func (r *responder) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, ip netip.Addr, res Reservation) *dhcpv4.DHCPv4 {
	d := r.base(req, mt)
	if ip.IsValid() {
		d.YourIPAddr = ip.AsSlice()
	}
	d.UpdateOption(dhcpv4.OptSubnetMask(r.mask))
	d.UpdateOption(dhcpv4.OptIPAddressLeaseTime(r.cfg.LeaseTime))
	d.UpdateOption(dhcpv4.OptRenewTimeValue(r.cfg.LeaseTime / 2))
	d.UpdateOption(dhcpv4.OptRebindingTimeValue(r.cfg.LeaseTime * 7 / 8))
	if r.router != nil {
		d.UpdateOption(dhcpv4.OptRouter(r.router...))
	}
	if r.dns != nil {
		d.UpdateOption(dhcpv4.OptDNS(r.dns...))
	}
	if res.Hostname != "" {
		d.UpdateOption(dhcpv4.OptHostName(res.Hostname))
	}
	if res.Kind != KindBMC { // a BMC never netboots
		r.addBoot(req, d)
	}
	return d
}

// addBoot picks the boot file from what the client says it is
// (docs/boot-contract.md §1): iPXE gets the HTTP script, a UEFI HTTP boot
// client the HTTP URL of ipxe.efi, PXE firmware an iPXE binary over TFTP
// by client architecture (option 93).
func (r *responder) addBoot(req *dhcpv4.DHCPv4, d *dhcpv4.DHCPv4) {
	base := "http://" + r.cfg.ServerIP.String() + ":" + strconv.Itoa(r.cfg.HTTPPort)
	vendor := req.ClassIdentifier()
	switch {
	case isIPXE(req):
		setBootFile(d, base+iPXEScript)
	case strings.HasPrefix(vendor, "HTTPClient"):
		setBootFile(d, base+httpBootPath)
		d.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient")) // UEFI HTTP boot wants it echoed
	case strings.HasPrefix(vendor, "PXEClient") || req.Options.Has(dhcpv4.OptionClientSystemArchitectureType):
		file := tftpBootFile(req.ClientArch())
		if file == "" {
			return // an architecture Racker has no iPXE for: plain lease
		}
		d.ServerIPAddr = r.server
		setBootFile(d, file)
		d.UpdateOption(dhcpv4.OptTFTPServerName(r.cfg.ServerIP.String()))
	}
}

// tftpBootFile maps client architectures (RFC 4578) to the iPXE binary.
func tftpBootFile(archs []iana.Arch) string {
	if len(archs) == 0 {
		return BIOSBootFile // PXEClient without option 93: a BIOS ROM
	}
	switch archs[0] {
	case iana.INTEL_X86PC:
		return BIOSBootFile
	case iana.EFI_X86_64, iana.EFI_BC:
		return EFIBootFile
	}
	return ""
}

func isIPXE(req *dhcpv4.DHCPv4) bool {
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			return true
		}
	}
	return false
}

func setBootFile(d *dhcpv4.DHCPv4, file string) {
	if len(file) < 128 {
		d.BootFileName = file
	}
	d.UpdateOption(dhcpv4.OptBootFileName(file))
}

func (r *responder) nak(req *dhcpv4.DHCPv4, why string) *dhcpv4.DHCPv4 {
	d := r.base(req, dhcpv4.MessageTypeNak)
	d.UpdateOption(dhcpv4.OptMessage(why))
	return d
}

// base is a reply skeleton; built by hand because dhcpv4.New draws a
// random transaction ID per packet that a reply would overwrite anyway.
func (r *responder) base(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       dhcpv4.Options{},
	}
	if mt != dhcpv4.MessageTypeNak && req.ClientIPAddr != nil {
		d.ClientIPAddr = req.ClientIPAddr
	}
	if d.GatewayIPAddr == nil {
		d.GatewayIPAddr = net.IPv4zero
	}
	d.UpdateOption(dhcpv4.OptMessageType(mt))
	d.UpdateOption(dhcpv4.OptServerIdentifier(r.server))
	if cid := req.Options.Get(dhcpv4.OptionClientIdentifier); cid != nil {
		d.UpdateOption(dhcpv4.OptClientIdentifier(cid)) // RFC 6842
	}
	if rai := req.Options.Get(dhcpv4.OptionRelayAgentInformation); rai != nil {
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, rai)) // RFC 3046: echoed to the relay
	}
	return d
}

// destination is where a reply goes (RFC 2131 §4.1): to the relay, to a
// client that already has its address, else broadcast on the PXE link,
// which every PXE ROM, iPXE and BMC accepts.
func destination(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	if reply.MessageType() != dhcpv4.MessageTypeNak {
		if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() {
			return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
		}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
