package vm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
)

// dhcpClientMAC returns the client hardware address of a DHCP request
// (BOOTREQUEST to UDP port 67) in an Ethernet frame, or nil.
func dhcpClientMAC(frame []byte) net.HardwareAddr {
	if len(frame) < 14+20 || frame[12] != 0x08 || frame[13] != 0x00 {
		return nil
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != 17 || len(ip) < ihl+8+236 {
		return nil
	}
	udp := ip[ihl:]
	if udp[2] != 0 || udp[3] != 67 {
		return nil
	}
	bootp := udp[8:]
	if bootp[0] != 1 || bootp[1] != 1 || bootp[2] != 6 { // BOOTREQUEST, Ethernet
		return nil
	}
	return net.HardwareAddr(bytes.Clone(bootp[28:34]))
}

// captureDHCP listens on an interface with a raw packet socket and reports
// the first DHCP request from mac; the socket is open before the caller
// powers anything on, so nothing is missed.
func captureDHCP(t *testing.T, ifname string, mac net.HardwareAddr) <-chan error {
	t.Helper()
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	proto := int(htons(unix.ETH_P_IP))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		t.Fatalf("bind raw socket to %s: %v", ifname, err)
	}
	tv := unix.NsecToTimeval(int64(500 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	done := make(chan error, 1)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		deadline := time.Now().Add(3 * time.Minute) // a bound so a broken VM fails the test
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if got := dhcpClientMAC(buf[:n]); got != nil && got.String() == mac.String() {
				done <- nil
				return
			}
		}
		done <- fmt.Errorf("no DHCP request from %s on %s", mac, ifname)
	}()
	return done
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestVMPoweredOnWithNetworkBootSendsDHCPOnTheInternalBridge(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "qemu-img")
	testenv.RequireCommand(t, "libvirtd")
	testenv.RequireFile(t, "/usr/bin/qemu-system-x86_64")
	for _, fw := range []Firmware{BIOS, UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			if fw == UEFI {
				testenv.RequireFile(t, OVMFCode)
			}
			inst := fmt.Sprintf("vt%s%d", fw[:1], os.Getpid()%100000)
			names := netenv.Names{Instance: inst}
			netenv.ForTest(t, netenv.Topology{Bridges: []netenv.Bridge{{Name: names.Bridge("int")}, {Name: names.Bridge("pub")}}})

			ctx := context.Background()
			m, err := Connect(ctx, slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			dir, err := os.MkdirTemp("", "vmtest")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			s := Spec{
				Name: inst + "-n1", Firmware: fw, Disks: []string{"10G", "4G"}, NetworkFirst: true, Dir: filepath.Join(dir, "n1"),
				PrimaryMAC: netenv.MAC(inst, 1, 1), SecondaryMAC: netenv.MAC(inst, 1, 3),
				InternalBridge: names.Bridge("int"), PublicBridge: names.Bridge("pub"),
				PrimaryTap: names.Iface("n1", "i"), SecondaryTap: names.Iface("n1", "p"), MemoryMiB: 256,
			}
			files, err := m.Define(ctx, s)
			t.Cleanup(func() {
				if err := m.Remove(s.Name); err != nil {
					t.Error(err)
				}
				if st, _ := m.State(s.Name); st != "absent" {
					t.Errorf("domain %s left behind (%s)", s.Name, st)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range files.Disks {
				if _, err := os.Stat(d); err != nil {
					t.Fatalf("disk not created: %v", err)
				}
			}
			// Define is idempotent.
			if _, err := m.Define(ctx, s); err != nil {
				t.Fatalf("second Define: %v", err)
			}
			if st, _ := m.State(s.Name); st != "shut off" {
				t.Fatalf("new domain is %q, want shut off", st)
			}
			got := captureDHCP(t, names.Bridge("int"), s.PrimaryMAC)
			start := time.Now()
			if err := m.Start(s.Name); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				log, _ := os.ReadFile(files.ConsoleLog)
				t.Fatalf("%v; console:\n%s", err, log)
			}
			t.Logf("%s: first DHCP request %.1f s after start", fw, time.Since(start).Seconds())
			// The tap carries the name we gave it, so faults can find the cable.
			if _, err := net.InterfaceByName(s.PrimaryTap); err != nil {
				t.Errorf("primary tap %s: %v", s.PrimaryTap, err)
			}
			if err := m.SetLink(s.Name, s.PrimaryMAC.String(), s.InternalBridge, false); err != nil {
				t.Fatal(err)
			}
			x, _ := m.XML(s.Name)
			if !strings.Contains(x, "<link state='down'/>") {
				t.Errorf("link-down not in the definition:\n%s", x)
			}
			if err := m.Stop(s.Name); err != nil {
				t.Fatal(err)
			}
		})
	}
}
