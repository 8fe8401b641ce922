package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/racker/racker/provisioner/bootsvc/internal/leases"
)

var (
	server  = netip.MustParseAddr("172.24.213.1")
	subnet  = netip.MustParsePrefix("172.24.213.0/24")
	nodeMAC = mustMAC("00:11:22:33:44:10")
	bmcMAC  = mustMAC("00:11:22:33:44:11")
	strange = mustMAC("02:aa:bb:cc:dd:ee")
	now     = time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func testResponder(pool bool) *responder {
	return newResponder(Config{ServerIP: server, Subnet: subnet, LeaseTime: 5 * time.Minute, HTTPPort: 8080, DynamicPool: pool,
		Reservations: []Reservation{
			{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("172.24.213.2"), Hostname: "racker-controller-0", Kind: KindNode},
			{MAC: "00:11:22:33:44:11", IP: netip.MustParseAddr("172.24.213.3"), Kind: KindBMC},
		}}, nil)
}

func discover(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func request(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	r, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pxe(arch iana.Arch, vendor string) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(arch)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor))}
}

func TestPlannedNodeGetsItsAddressAndBootFile(t *testing.T) {
	r := testResponder(false)
	cases := []struct {
		name       string
		mods       []dhcpv4.Modifier
		file       string
		siaddr     bool
		echoVendor string
	}{
		{"BIOS PXE", pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"), "undionly.kpxe", true, ""},
		{"UEFI PXE", pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003000"), "ipxe.efi", true, ""},
		{"UEFI BC", pxe(iana.EFI_BC, "PXEClient:Arch:00009:UNDI:003000"), "ipxe.efi", true, ""},
		{"iPXE", append(pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))),
			"http://172.24.213.1:8080/boot.ipxe", false, ""},
		{"iPXE RFC 3004 user class", []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", true)}, "http://172.24.213.1:8080/boot.ipxe", false, ""},
		{"UEFI HTTP boot", pxe(iana.EFI_X86_HTTP, "HTTPClient:Arch:00016:UNDI:003001"), "http://172.24.213.1:8080/assets/ipxe/ipxe.efi", false, "HTTPClient"},
		{"plain OS", nil, "", false, ""},
		{"ARM64 PXE has no iPXE here", pxe(iana.EFI_ARM64, "PXEClient:Arch:00011:UNDI:003000"), "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := r.answer(discover(t, nodeMAC, c.mods...), now)
			if d.reply == nil || d.reply.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("no OFFER: %+v", d)
			}
			o := d.reply
			if got := o.YourIPAddr.String(); got != "172.24.213.2" {
				t.Errorf("yiaddr = %s, want the planned 172.24.213.2", got)
			}
			if o.BootFileNameOption() != c.file || o.BootFileName != c.file {
				t.Errorf("boot file = %q / %q, want %q", o.BootFileNameOption(), o.BootFileName, c.file)
			}
			if c.siaddr != o.ServerIPAddr.Equal(net.ParseIP("172.24.213.1")) {
				t.Errorf("siaddr = %s (TFTP boot: %v)", o.ServerIPAddr, c.siaddr)
			}
			if got := o.ClassIdentifier(); got != c.echoVendor {
				t.Errorf("vendor class in reply = %q, want %q", got, c.echoVendor)
			}
			if o.HostName() != "racker-controller-0" || !o.ServerIdentifier().Equal(net.ParseIP("172.24.213.1")) {
				t.Errorf("hostname %q, server id %s", o.HostName(), o.ServerIdentifier())
			}
			if o.SubnetMask().String() != "ffffff00" || o.IPAddressLeaseTime(0) != 5*time.Minute {
				t.Errorf("mask %s, lease %s", o.SubnetMask(), o.IPAddressLeaseTime(0))
			}
			if d.lease != nil {
				t.Error("an OFFER must not commit a lease")
			}
			// The REQUEST that follows gets an ACK with a lease to commit first.
			a := r.answer(request(t, o, c.mods...), now)
			if a.reply == nil || a.reply.MessageType() != dhcpv4.MessageTypeAck || a.lease == nil {
				t.Fatalf("no ACK with lease: %+v", a)
			}
			if a.lease.IP.String() != "172.24.213.2" || a.lease.MAC != "00:11:22:33:44:10" || !a.lease.Expires.Equal(now.Add(5*time.Minute)) || a.lease.Kind != KindNode {
				t.Errorf("lease = %+v", *a.lease)
			}
			if a.reply.BootFileNameOption() != c.file {
				t.Errorf("ACK boot file = %q, want %q", a.reply.BootFileNameOption(), c.file)
			}
		})
	}
}

func TestBMCGetsAddressButNoBootFile(t *testing.T) {
	r := testResponder(false)
	d := r.answer(discover(t, bmcMAC, pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000")...), now)
	if d.reply == nil || d.reply.YourIPAddr.String() != "172.24.213.3" {
		t.Fatalf("BMC offer = %+v", d.reply)
	}
	if d.reply.BootFileNameOption() != "" || d.reply.HostName() != "" || d.kind != KindBMC {
		t.Errorf("BMC offer has boot file %q, hostname %q, kind %q", d.reply.BootFileNameOption(), d.reply.HostName(), d.kind)
	}
}

func TestUnknownMACGetsNothingWithoutPool(t *testing.T) {
	r := testResponder(false)
	d := r.answer(discover(t, strange), now)
	if d.reply != nil || !d.unknown || d.drop != "unknown_mac" {
		t.Fatalf("unknown MAC: %+v", d)
	}
	req := discover(t, strange, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.24.213.200"))))
	if d := r.answer(req, now); d.reply != nil || d.lease != nil || !d.unknown {
		t.Fatalf("unknown MAC REQUEST: %+v", d)
	}
}

func TestDynamicPool(t *testing.T) {
	r := testResponder(true)
	d := r.answer(discover(t, strange), now)
	if d.reply == nil || !d.unknown {
		t.Fatalf("pool offer: %+v", d)
	}
	ip := addrOf(d.reply.YourIPAddr)
	first, last := netip.MustParseAddr("172.24.213.128"), netip.MustParseAddr("172.24.213.254")
	if ip.Compare(first) < 0 || ip.Compare(last) > 0 {
		t.Fatalf("pool address %s outside %s-%s", ip, first, last)
	}
	a := r.answer(request(t, d.reply), now)
	if a.reply == nil || a.reply.MessageType() != dhcpv4.MessageTypeAck || a.lease == nil || a.lease.IP != ip || a.lease.Kind != "pool" {
		t.Fatalf("pool ACK: %+v", a)
	}
	// Another unknown machine gets another address; asking for the first
	// one's address is refused.
	other := mustMAC("02:aa:bb:cc:dd:ef")
	o2 := r.answer(discover(t, other, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))), now)
	if o2.reply == nil || addrOf(o2.reply.YourIPAddr) == ip {
		t.Fatalf("second machine offered %v, the first holds %s", o2.reply, ip)
	}
	steal := discover(t, other, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())))
	if n := r.answer(steal, now); n.reply == nil || n.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("taking a held pool address: %+v", n)
	}
	// The pool never offers planned addresses, even when asked for one.
	o3 := r.answer(discover(t, mustMAC("02:aa:bb:cc:dd:f0"), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.24.213.2")))), now)
	if o3.reply == nil || addrOf(o3.reply.YourIPAddr) == netip.MustParseAddr("172.24.213.2") {
		t.Fatalf("pool offered a planned address: %+v", o3.reply)
	}
	// After a release the address is free again.
	rel := discover(t, strange, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ip.AsSlice()))
	if d := r.answer(rel, now); d.release != "02:aa:bb:cc:dd:ee" || d.reply != nil {
		t.Fatalf("release: %+v", d)
	}
	if n := r.answer(steal, now); n.reply == nil || n.reply.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("released address not given to another machine: %+v", n)
	}
}

func TestRequestsThatMustNotBeAcked(t *testing.T) {
	r := testResponder(false)
	wrong := discover(t, nodeMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.24.213.99"))))
	if d := r.answer(wrong, now); d.reply == nil || d.reply.MessageType() != dhcpv4.MessageTypeNak || d.lease != nil {
		t.Fatalf("REQUEST for a wrong address: %+v", d)
	}
	elsewhere := discover(t, nodeMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.24.213.2"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1"))))
	if d := r.answer(elsewhere, now); d.reply != nil || d.drop != "other_server" {
		t.Fatalf("REQUEST to another server: %+v", d)
	}
	reply := discover(t, nodeMAC)
	reply.OpCode = dhcpv4.OpcodeBootReply
	if d := r.answer(reply, now); d.reply != nil {
		t.Fatal("answered a BOOTREPLY")
	}
	// Renewal: no option 50, the address in ciaddr.
	renew := discover(t, nodeMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.ParseIP("172.24.213.2")))
	d := r.answer(renew, now)
	if d.reply == nil || d.reply.MessageType() != dhcpv4.MessageTypeAck || d.lease == nil {
		t.Fatalf("renewal: %+v", d)
	}
	if to := destination(renew, d.reply); !to.IP.Equal(net.ParseIP("172.24.213.2")) || to.Port != 68 {
		t.Errorf("renewal ACK goes to %s, want the client's unicast address", to)
	}
}

func TestDestination(t *testing.T) {
	r := testResponder(false)
	d := discover(t, nodeMAC)
	if to := destination(d, r.answer(d, now).reply); !to.IP.Equal(net.IPv4bcast) || to.Port != 68 {
		t.Errorf("OFFER to a client without address goes to %s", to)
	}
	relayed := discover(t, nodeMAC, dhcpv4.WithRelay(net.ParseIP("10.9.9.9")))
	if to := destination(relayed, r.answer(relayed, now).reply); !to.IP.Equal(net.ParseIP("10.9.9.9")) || to.Port != 67 {
		t.Errorf("relayed OFFER goes to %s", to)
	}
}

func TestNewRefusesBadReservations(t *testing.T) {
	store := openStore(t)
	for name, res := range map[string][]Reservation{
		"outside the subnet": {{MAC: "02:00:00:00:00:01", IP: netip.MustParseAddr("10.0.0.1"), Kind: KindNode}},
		"bad MAC":            {{MAC: "02:00:00:00:00", IP: netip.MustParseAddr("172.24.213.9"), Kind: KindNode}},
		"same address twice": {{MAC: "02:00:00:00:00:01", IP: netip.MustParseAddr("172.24.213.9"), Kind: KindNode},
			{MAC: "02:00:00:00:00:02", IP: netip.MustParseAddr("172.24.213.9"), Kind: KindBMC}},
	} {
		if _, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store, Reservations: res}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	res := []Reservation{{MAC: "02:AA:00:00:00:01", IP: netip.MustParseAddr("172.24.213.9"), Kind: KindNode}}
	if _, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store, Reservations: res}); err != nil {
		t.Fatal(err)
	}
	if res[0].MAC != "02:AA:00:00:00:01" {
		t.Error("New changed the caller's reservations")
	}
}

func TestPoolRunsOutThenReusesExpiredLeases(t *testing.T) {
	r := newResponder(Config{ServerIP: netip.MustParseAddr("10.1.0.1"), Subnet: netip.MustParsePrefix("10.1.0.0/29"),
		LeaseTime: time.Minute, DynamicPool: true}, nil) // pool: 10.1.0.4-10.1.0.6
	var got []netip.Addr
	for i := 0; i < 4; i++ {
		mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
		d := r.answer(discover(t, mac), now)
		if i == 3 {
			if d.reply != nil || d.drop != "pool_full" {
				t.Fatalf("fourth machine in a pool of three: %+v", d)
			}
			break
		}
		if d.reply == nil {
			t.Fatalf("machine %d got no offer", i)
		}
		a := r.answer(request(t, d.reply), now)
		got = append(got, a.lease.IP)
	}
	if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Fatalf("pool handed out %v", got)
	}
	// Once the first leases ran out, a newcomer gets one of their addresses.
	later := now.Add(2 * time.Minute)
	d := r.answer(discover(t, net.HardwareAddr{2, 0, 0, 0, 0, 9}), later)
	if d.reply == nil {
		t.Fatal("expired pool leases were not reused")
	}
}

// BenchmarkAnswer is the per-packet work of the server minus the socket:
// parse, answer, serialise.
func BenchmarkAnswer(b *testing.B) {
	r := testResponder(false)
	d, _ := dhcpv4.NewDiscovery(nodeMAC, pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003000")...)
	raw := d.ToBytes()
	for b.Loop() {
		req, err := dhcpv4.FromBytes(raw)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.answer(req, now).reply.ToBytes()
	}
}

func TestRelayAgentInformationIsEchoed(t *testing.T) {
	r := testResponder(false)
	rai := dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))
	req := discover(t, nodeMAC, dhcpv4.WithRelay(net.ParseIP("10.9.9.9")), dhcpv4.WithOption(rai))
	d := r.answer(req, now)
	if d.reply == nil || string(d.reply.Options.Get(dhcpv4.OptionRelayAgentInformation)) != string(req.Options.Get(dhcpv4.OptionRelayAgentInformation)) {
		t.Fatalf("option 82 not echoed: %v", d.reply)
	}
}

func TestSetReservationsWhileServing(t *testing.T) {
	store := openStore(t)
	s, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store, DynamicPool: true,
		Reservations: []Reservation{{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("172.24.213.2"), Kind: KindNode}}})
	if err != nil {
		t.Fatal(err)
	}
	// An unknown machine takes a pool address first.
	if o := s.r.Load().answer(discover(t, strange), now); o.reply == nil || !o.unknown {
		t.Fatalf("pool offer: %+v", o)
	}
	if err := s.SetReservations([]Reservation{
		{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("172.24.213.2"), Kind: KindNode},
		{MAC: "00:11:22:33:44:20", IP: netip.MustParseAddr("172.24.213.4"), Kind: KindNode},
		{MAC: "02:aa:bb:cc:dd:ee", IP: netip.MustParseAddr("172.24.213.5"), Kind: KindNode}, // the unknown one is now planned
	}, nil); err != nil {
		t.Fatal(err)
	}
	r := s.r.Load()
	if d := r.answer(discover(t, mustMAC("00:11:22:33:44:20")), now); d.reply == nil || d.reply.YourIPAddr.String() != "172.24.213.4" {
		t.Fatalf("added node: %+v", d)
	}
	if d := r.answer(discover(t, strange), now); d.reply == nil || d.reply.YourIPAddr.String() != "172.24.213.5" || d.unknown {
		t.Fatalf("a machine added to the plan still answered from the pool: %+v", d)
	}
	if d := r.answer(discover(t, mustMAC("02:00:00:00:00:77")), now); d.reply == nil || !d.unknown {
		t.Fatalf("the pool was lost: %+v", d)
	}
	if err := s.SetReservations([]Reservation{{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("10.0.0.1")}}, nil); err == nil {
		t.Fatal("a reservation outside the subnet was accepted")
	}
	if s.r.Load() != r {
		t.Fatal("a refused reservation set replaced the served one")
	}
}

// A retired machine (racker retire) that is powered on again, or the broken
// one a racker replace swapped out and that is still cabled, gets no
// answer to anything, even with the dynamic pool on; its lease is taken
// back when the plan that retires it is set; and a MAC both planned and
// refused is a caller's mistake.
func TestRetiredMACGetsNothingEvenFromThePool(t *testing.T) {
	store := openStore(t)
	retired := mustMAC("00:11:22:33:44:20")
	if err := store.Put(leases.Lease{MAC: retired.String(), IP: netip.MustParseAddr("172.24.213.4"), Expires: now.Add(time.Hour), Kind: KindNode}); err != nil {
		t.Fatal(err)
	}
	node := Reservation{MAC: "00:11:22:33:44:10", IP: netip.MustParseAddr("172.24.213.2"), Kind: KindNode}
	s, err := New(Config{ServerIP: server, Subnet: subnet, Leases: store, DynamicPool: true,
		Reservations: []Reservation{node, {MAC: retired.String(), IP: netip.MustParseAddr("172.24.213.4"), Kind: KindNode}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReservations([]Reservation{node}, []string{"00-11-22-33-44-20"}); err != nil {
		t.Fatal(err)
	}
	r := s.r.Load()
	for _, req := range []*dhcpv4.DHCPv4{
		discover(t, retired, pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000")...),
		discover(t, retired, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.24.213.4")))),
		discover(t, retired, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform)),
	} {
		if d := r.answer(req, now); d.reply != nil || d.lease != nil || d.drop != dropRetired {
			t.Errorf("retired MAC, %s: %+v", req.MessageType(), d)
		}
	}
	if _, ok := store.Get(retired.String()); ok {
		t.Error("the retired machine's lease was kept")
	}
	// Everyone else is served as before.
	if d := r.answer(discover(t, mustMAC(node.MAC)), now); d.reply == nil || d.reply.YourIPAddr.String() != "172.24.213.2" {
		t.Errorf("planned node after a retirement: %+v", d)
	}
	if d := r.answer(discover(t, strange), now); d.reply == nil || !d.unknown {
		t.Errorf("the pool after a retirement: %+v", d)
	}
	if err := s.SetReservations([]Reservation{node}, []string{node.MAC}); err == nil {
		t.Error("a MAC both planned and refused was accepted")
	}
}
