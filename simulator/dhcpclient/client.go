// Package dhcpclient is the simulator's one DHCPv4 client, shared by the
// virtual BMC (simulator/vbmc) and the test OS (simulator/testos): a
// client on one interface over nclient4's raw socket (so it works before
// the interface has an address), the lease an ACK grants, putting a lease
// on a link, and an acquire loop whose pace each caller chooses, as real
// BMCs and initramfs clients differ there.
//
// It belongs to the simulator: the product (provisioner/) serves DHCP and
// never imports it.
package dhcpclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Options shape a client.
type Options struct {
	// Timeout is how long one packet waits for its answer, and Retries how
	// often nclient4 sends it before an exchange fails.
	Timeout time.Duration
	Retries int
	// Exchange bounds one whole DISCOVER…ACK (or renewal) exchange; zero
	// leaves it to the caller's context.
	Exchange time.Duration
	// VendorClass is sent as option 60 in DISCOVER and REQUEST ("" sends
	// none), so the server's log says what kind of machine asked.
	VendorClass string
}

// Client is a DHCP client on one interface and the last lease it got.
type Client struct {
	iface string
	opts  Options
	c     *nclient4.Client
	lease *nclient4.Lease
}

// Open starts a client on iface; Close ends it.
func Open(iface string, o Options) (*Client, error) {
	var copts []nclient4.ClientOpt
	if o.Timeout > 0 {
		copts = append(copts, nclient4.WithTimeout(o.Timeout))
	}
	if o.Retries > 0 {
		copts = append(copts, nclient4.WithRetry(o.Retries))
	}
	c, err := nclient4.New(iface, copts...)
	if err != nil {
		return nil, fmt.Errorf("while opening a DHCP client on %s: %w", iface, err)
	}
	return &Client{iface: iface, opts: o, c: c}, nil
}

// Close releases the client's socket (not the lease: a machine that stops
// asking keeps its address until the lease runs out).
func (c *Client) Close() error { return c.c.Close() }

// Interface names the client's interface.
func (c *Client) Interface() string { return c.iface }

func (c *Client) exchange(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.opts.Exchange > 0 {
		return context.WithTimeout(ctx, c.opts.Exchange)
	}
	return context.WithCancel(ctx)
}

// Request runs one DISCOVER/OFFER/REQUEST/ACK exchange.
func (c *Client) Request(ctx context.Context) (Lease, error) {
	ectx, cancel := c.exchange(ctx)
	defer cancel()
	var mods []dhcpv4.Modifier
	if c.opts.VendorClass != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(c.opts.VendorClass)))
	}
	l, err := c.c.Request(ectx, mods...)
	if err != nil {
		return Lease{}, fmt.Errorf("while asking for a DHCP lease on %s: %w", c.iface, err)
	}
	return c.took(l)
}

// Renew asks the server of the last lease to extend it. A server's NAK
// comes back as an error wrapping *nclient4.ErrNak (see IsNak).
func (c *Client) Renew(ctx context.Context) (Lease, error) {
	if c.lease == nil {
		return Lease{}, errors.New("no DHCP lease to renew on " + c.iface)
	}
	ectx, cancel := c.exchange(ctx)
	defer cancel()
	l, err := c.c.Renew(ectx, c.lease)
	if err != nil {
		return Lease{}, fmt.Errorf("while renewing the DHCP lease on %s: %w", c.iface, err)
	}
	return c.took(l)
}

func (c *Client) took(l *nclient4.Lease) (Lease, error) {
	li, err := LeaseOf(l.ACK)
	if err != nil {
		return Lease{}, fmt.Errorf("on %s: %w", c.iface, err)
	}
	c.lease = l
	return li, nil
}

// IsNak says whether err is the server's "no" to a request: the lease is
// gone at once.
func IsNak(err error) bool {
	var nak *nclient4.ErrNak
	return errors.As(err, &nak)
}

// Backoff is the pause between failed attempts: First after the first
// failure, doubling up to Max. Max at or below First keeps a fixed pace.
type Backoff struct {
	First, Max time.Duration
}

// Next is the pause after one of wait.
func (b Backoff) Next(wait time.Duration) time.Duration {
	if b.Max <= b.First {
		return b.First
	}
	return min(wait*2, b.Max)
}

// Acquire asks for a lease until a server gives one or ctx ends, pausing
// as b says between attempts. After each failed attempt (while ctx lives)
// it calls retrying, if not nil, with the attempt's number, the pause
// ahead and the attempt's error, so each caller logs in its own words.
// When ctx ends it answers an error wrapping ctx's error and naming the
// last attempt's.
func (c *Client) Acquire(ctx context.Context, b Backoff, retrying func(attempt int, next time.Duration, err error)) (Lease, error) {
	wait := b.First
	for attempt := 1; ; attempt++ {
		l, err := c.Request(ctx)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return Lease{}, fmt.Errorf("no DHCP lease on %s (%v): %w", c.iface, err, ctx.Err())
		}
		if retrying != nil {
			retrying(attempt, wait, err)
		}
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("no DHCP lease on %s (%v): %w", c.iface, err, ctx.Err())
		case <-time.After(wait):
		}
		wait = b.Next(wait)
	}
}
