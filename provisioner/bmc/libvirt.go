package bmc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// The libvirt driver controls a local libvirt domain directly, for laptop
// VMs that stand in for servers without BMC emulation. It maps the BMC
// operations onto libvirt:
//
//   - power: domain create / destroy / reset;
//   - boot device: per-device boot order in the persistent domain XML
//     (<boot order='1'/> on the primary NIC for PXE, on the first disk for
//     disk), which takes effect at the next start; the requested flags are
//     kept in the domain's <metadata> so Boot reports them. libvirt has no
//     "next boot only": a next-boot PXE is put back to disk first right after
//     the start that used it, as a BMC's firmware would;
//   - EFI is the domain's firmware (OVMF or not) and cannot be switched;
//   - console: the domain's serial port, a unix socket (<serial type='unix'>)
//     or a pty, with one user at a time across processes.

const rackerNS = "https://github.com/racker/racker/bmc"

type libvirtController struct {
	opts   Options
	domain string // empty: find by Options.PrimaryMAC
	label  string

	mu sync.Mutex // serialises read-modify-write of the domain XML
}

func openLibvirt(ctx context.Context, u *url.URL, opts Options) (Controller, error) {
	if u.Host != "" {
		return nil, fmt.Errorf("%sBMC URL libvirt://%s%s: only the local libvirt is supported (libvirt:///DOMAIN)", nodePrefix(opts.Node), u.Host, u.Path)
	}
	name := strings.Trim(u.Path, "/")
	if name == "" && opts.PrimaryMAC == "" {
		return nil, fmt.Errorf("%sBMC URL libvirt:///: name a domain, or give the node's primary MAC to find it", nodePrefix(opts.Node))
	}
	label := "libvirt:///" + name
	if name == "" {
		label = "libvirt domain with MAC " + opts.PrimaryMAC
	}
	return &libvirtController{opts: opts, domain: name, label: label}, nil
}

func (c *libvirtController) fail(what string, err error) error {
	return fmt.Errorf("%sBMC %s: %s: %w", nodePrefix(c.opts.Node), c.label, what, err)
}

// with connects to libvirtd, finds the domain and runs fn. A connection per
// operation: a local socket is cheap, and no connection outlives a call.
func (c *libvirtController) with(ctx context.Context, what string, fn func(l *libvirt.Libvirt, d libvirt.Domain) error) error {
	if err := ctx.Err(); err != nil {
		return c.fail(what, err)
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(c.opts.LibvirtSocket), dialers.WithLocalTimeout(c.opts.TryTimeout)))
	if err := l.Connect(); err != nil {
		return c.fail(what, fmt.Errorf("connecting to libvirtd at %s (is libvirtd running?): %w", c.opts.LibvirtSocket, err))
	}
	defer l.Disconnect()
	d, err := c.find(l)
	if err != nil {
		return c.fail(what, err)
	}
	if err := fn(l, d); err != nil {
		return c.fail(what, err)
	}
	return nil
}

func (c *libvirtController) find(l *libvirt.Libvirt) (libvirt.Domain, error) {
	if c.domain != "" {
		d, err := l.DomainLookupByName(c.domain)
		if err != nil {
			return d, fmt.Errorf("finding domain %q (virsh list --all shows libvirtd's domains; the node's BMC URL names it): %w", c.domain, err)
		}
		return d, nil
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return libvirt.Domain{}, fmt.Errorf("listing domains: %w", err)
	}
	var looked []string
	for _, d := range doms {
		looked = append(looked, d.Name)
		x, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLInactive)
		if err != nil {
			continue
		}
		root, err := parseXMLTree(x)
		if err != nil {
			continue
		}
		if primaryNIC(root, c.opts.PrimaryMAC) != nil {
			c.domain = d.Name
			c.label = "libvirt:///" + d.Name
			return d, nil
		}
	}
	return libvirt.Domain{}, fmt.Errorf("no libvirt domain has a NIC with MAC %s (looked at %s)", c.opts.PrimaryMAC, domainList(looked))
}

// primaryNIC returns the interface with mac, or the first one when mac is "".
func primaryNIC(root *xmlNode, mac string) *xmlNode {
	devs := root.child("devices")
	if devs == nil {
		return nil
	}
	for _, nic := range devs.elements("interface") {
		m := nic.child("mac")
		if mac == "" || (m != nil && strings.EqualFold(m.attr("address"), mac)) {
			return nic
		}
	}
	return nil
}

func firstDisk(root *xmlNode) *xmlNode {
	if devs := root.child("devices"); devs != nil {
		for _, d := range devs.elements("disk") {
			if d.attr("device") == "" || d.attr("device") == "disk" {
				return d
			}
		}
	}
	return nil
}

func running(l *libvirt.Libvirt, d libvirt.Domain) (bool, error) {
	st, _, err := l.DomainGetState(d, 0)
	if err != nil {
		return false, fmt.Errorf("reading domain state: %w", err)
	}
	s := libvirt.DomainState(st)
	return s == libvirt.DomainRunning || s == libvirt.DomainPaused || s == libvirt.DomainBlocked || s == libvirt.DomainPmsuspended, nil
}

func (c *libvirtController) PowerState(ctx context.Context) (PowerState, error) {
	s := PowerOff
	err := c.with(ctx, "reading power state", func(l *libvirt.Libvirt, d libvirt.Domain) error {
		on, err := running(l, d)
		if on {
			s = PowerOn
		}
		return err
	})
	return s, err
}

func (c *libvirtController) Power(ctx context.Context, a PowerAction) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.with(ctx, "power "+string(a), func(l *libvirt.Libvirt, d libvirt.Domain) error {
		on, err := running(l, d)
		if err != nil {
			return err
		}
		switch a {
		case ActionOn:
			if on {
				return nil
			}
			return c.start(l, d)
		case ActionOff:
			if !on {
				return nil
			}
			return l.DomainDestroy(d)
		case ActionSoftOff:
			if !on {
				return nil
			}
			return l.DomainShutdown(d) // ACPI power button

		case ActionCycle:
			if on {
				if err := l.DomainDestroy(d); err != nil {
					return err
				}
			}
			return c.start(l, d)
		case ActionReset:
			if !on {
				return errors.New("node is off; use power on")
			}
			// With <on_reboot>destroy</on_reboot> (the simulator's domains)
			// QEMU runs with -no-reboot and a reset stops it: restart
			// instead, which also applies the current boot order.
			root, err := inactiveXML(l, d)
			if err != nil {
				return err
			}
			if r := root.child("on_reboot"); r != nil && strings.TrimSpace(textOf(r)) == "destroy" {
				if err := l.DomainDestroy(d); err != nil {
					return err
				}
				return c.start(l, d)
			}
			return l.DomainReset(d, 0)
		default:
			return fmt.Errorf("unknown action %q (want on, off, soft-off, cycle or reset)", a)
		}
	})
}

// start starts the domain and then consumes next-boot-only flags: the
// running domain keeps the order it started with, the stored definition
// goes back to disk first.
func (c *libvirtController) start(l *libvirt.Libvirt, d libvirt.Domain) error {
	if err := l.DomainCreate(d); err != nil {
		return fmt.Errorf("starting domain: %w", err)
	}
	root, err := inactiveXML(l, d)
	if err != nil {
		return err
	}
	f, ok := storedFlags(root)
	if !ok || f.Persistent || !f.Valid {
		return nil
	}
	setBootOrder(root, c.opts.PrimaryMAC, DeviceDisk)
	storeFlags(root, BootFlags{Device: DeviceNone, EFI: f.EFI})
	if _, err := l.DomainDefineXML(root.String()); err != nil {
		return fmt.Errorf("clearing next-boot-only flags after start: %w", err)
	}
	return nil
}

func (c *libvirtController) SetBoot(ctx context.Context, f BootFlags) (bool, error) {
	f, err := f.normalize()
	if err != nil {
		return false, c.fail("setting boot flags", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	verified := false
	err = c.with(ctx, "setting boot device "+f.String(), func(l *libvirt.Libvirt, d libvirt.Domain) error {
		root, err := inactiveXML(l, d)
		if err != nil {
			return err
		}
		if f.EFI != isEFI(root) {
			c.opts.Logger.Warn("the domain's firmware decides EFI or legacy; ignoring the request", "node", c.opts.Node, "domain", d.Name, "efi_requested", f.EFI)
			f.EFI = isEFI(root)
		}
		setBootOrder(root, c.opts.PrimaryMAC, f.Device)
		storeFlags(root, f)
		if _, err := l.DomainDefineXML(root.String()); err != nil {
			return fmt.Errorf("redefining the domain with the new boot order: %w", err)
		}
		back, err := inactiveXML(l, d)
		if err != nil {
			return err
		}
		want := f.Device
		if want == DeviceNone {
			want = DeviceDisk
		}
		verified = bootOrderDevice(back, c.opts.PrimaryMAC) == want
		return nil
	})
	return verified, err
}

func (c *libvirtController) Boot(ctx context.Context) (BootFlags, error) {
	var f BootFlags
	err := c.with(ctx, "reading boot flags", func(l *libvirt.Libvirt, d libvirt.Domain) error {
		root, err := inactiveXML(l, d)
		if err != nil {
			return err
		}
		var ok bool
		if f, ok = storedFlags(root); !ok {
			f = BootFlags{Device: DeviceNone}
		}
		f.EFI = isEFI(root)
		return nil
	})
	return f, err
}

func (c *libvirtController) Diag(ctx context.Context) (Diagnostics, error) {
	d := Diagnostics{Driver: "libvirt", Protocol: "libvirt " + c.opts.LibvirtSocket}
	err := c.with(ctx, "running diagnostics", func(l *libvirt.Libvirt, dom libvirt.Domain) error {
		d.Address = "libvirt:///" + dom.Name
		if on, err := running(l, dom); err != nil {
			d.Problems = append(d.Problems, err.Error())
		} else if on {
			d.Power = PowerOn
		} else {
			d.Power = PowerOff
		}
		root, err := inactiveXML(l, dom)
		if err != nil {
			return err
		}
		if f, ok := storedFlags(root); ok {
			d.Boot = f
		} else {
			d.Boot = BootFlags{Device: bootOrderDevice(root, c.opts.PrimaryMAC)}
		}
		d.Boot.EFI = isEFI(root)
		d.BootKnown = true
		if nic := primaryNIC(root, c.opts.PrimaryMAC); nic != nil {
			if m := nic.child("mac"); m != nil {
				d.MAC = m.attr("address") // no BMC: the node's own NIC
			}
		}
		_, _, serr := serialSource(root)
		d.SOLAvailable = serr == nil
		return nil
	})
	return d, err
}

// domainList names the domains a search looked at, the first few of them.
func domainList(names []string) string {
	switch {
	case len(names) == 0:
		return "no domains: libvirtd has none defined"
	case len(names) > 8:
		return fmt.Sprintf("%d domains: %s, …", len(names), strings.Join(names[:8], ", "))
	}
	return fmt.Sprintf("%d domains: %s", len(names), strings.Join(names, ", "))
}
