package bmc

import (
	"context"
	"fmt"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// SetBoot writes boot flags the way real BMCs need them:
//
//  1. parameter 3 = "don't clear the valid bit after 60 s", so a PXE
//     request survives until the power cycle that follows; BMCs that do not
//     know parameter 3 do not time out either, so its failure is only logged;
//  2. parameter 5 with the exact bytes of EncodeBootFlags;
//  3. read parameter 5 back; when it differs (some BMCs "forget" a write),
//     write again, at most Options.BootRetries times.
//
// A BMC that never reports what was written (stock ipmi_sim answers "flags
// not valid" forever) yields verified=false and a warning, not an error:
// the flags were accepted, and a later event (the node's DHCP request) shows
// whether they worked.
func (c *ipmiController) SetBoot(ctx context.Context, f BootFlags) (bool, error) {
	f, err := f.normalize()
	if err != nil {
		return false, c.fail("setting boot flags", err)
	}
	data := EncodeBootFlags(f)
	verified := false
	err = c.do(ctx, fmt.Sprintf("setting boot device %s", f), func(ctx context.Context, cl *client.Client) error {
		if _, err := cl.SetSystemBootOptionsParam(ctx, &chassis.SetSystemBootOptionsParamRequest{
			ParamSelector: paramValidBitClearing, ParamData: []byte{dontClearOnTimeout},
		}); err != nil {
			c.opts.Logger.Debug("BMC refused boot option parameter 3 (valid bit clearing); going on", "node", c.opts.Node, "bmc", c.addr, "err", err)
		}
		var last BootFlags
		var readErr error
		for write := 1; write <= c.opts.BootRetries; write++ {
			if _, err := cl.SetSystemBootOptionsParam(ctx, &chassis.SetSystemBootOptionsParamRequest{
				ParamSelector: paramBootFlags, ParamData: data[:],
			}); err != nil {
				return fmt.Errorf("write boot options parameter 5 (% x): %w", data, err)
			}
			last, readErr = readBootFlags(ctx, cl)
			if readErr == nil && sameRequest(f, last) {
				verified = true
				return nil
			}
			c.opts.Logger.Debug("boot flags did not read back as written", "node", c.opts.Node, "bmc", c.addr,
				"write", write, "wrote", fmt.Sprintf("% x", data), "read", last.String(), "err", readErr)
			if write < c.opts.BootRetries {
				select {
				case <-time.After(time.Duration(write) * 100 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		reason := "read back " + last.String()
		if readErr != nil {
			reason = readErr.Error()
		}
		c.opts.Logger.Warn("BMC accepted the boot flags but does not report them back; going on unverified",
			"node", c.opts.Node, "bmc", c.addr, "flags", f.String(), "writes", c.opts.BootRetries, "reason", reason)
		return nil
	})
	return verified, err
}

// readBootFlags reads parameter 5. "Parameter not supported" (0x80) means
// no flags were ever set on some BMCs: that reads as no override.
func readBootFlags(ctx context.Context, cl *client.Client) (BootFlags, error) {
	res, err := cl.GetSystemBootOptionsParam(ctx, paramBootFlags, 0, 0)
	if err != nil {
		if cc, ok := completionCode(err); ok && cc == types.CodeParameterNotSupported {
			return BootFlags{Device: DeviceNone}, nil
		}
		return BootFlags{}, fmt.Errorf("read boot options parameter 5: %w", err)
	}
	f, err := DecodeBootFlags(res.ParamData)
	if err != nil {
		return f, fmt.Errorf("read boot options parameter 5 (% x): %w", res.ParamData, err)
	}
	return f, nil
}

func (c *ipmiController) Boot(ctx context.Context) (BootFlags, error) {
	var f BootFlags
	err := c.do(ctx, "reading boot flags", func(ctx context.Context, cl *client.Client) error {
		var err error
		f, err = readBootFlags(ctx, cl)
		if err != nil {
			return permanentError{err}
		}
		return nil
	})
	return f, err
}

// Diag collects what an operator needs to tell a healthy BMC from a
// misconfigured one. Only session setup failing is an error; each part the
// BMC cannot answer is listed in Problems.
func (c *ipmiController) Diag(ctx context.Context) (Diagnostics, error) {
	d := Diagnostics{Driver: "ipmi", Address: c.addr}
	err := c.do(ctx, "running diagnostics", func(ctx context.Context, cl *client.Client) error {
		d.Problems = nil
		problem := func(what string, err error) { d.Problems = append(d.Problems, what+": "+err.Error()) }
		c.mu.Lock()
		if c.proto == protoLan {
			d.Protocol = "IPMI 1.5 lan"
		} else {
			d.Protocol = "IPMI 2.0 lanplus (cipher suites 17, 3)"
		}
		c.mu.Unlock()
		if id, err := cl.GetDeviceID(ctx); err != nil {
			problem("device id", err)
		} else {
			d.DeviceID = id.DeviceID
			d.DeviceRevision = id.DeviceRevision
			d.Firmware = fmt.Sprintf("%d.%02d", id.MajorFirmwareRevision, id.MinorFirmwareRevision)
			d.IPMIVersion = fmt.Sprintf("%d.%d", id.MajorIPMIVersion, id.MinorIPMIVersion)
			d.ManufacturerID = id.ManufacturerID
			d.ProductID = id.ProductID
		}
		if s, err := powerState(ctx, cl); err != nil {
			problem("power", err)
		} else {
			d.Power = s
		}
		if f, err := readBootFlags(ctx, cl); err != nil {
			problem("boot flags", err)
		} else {
			d.Boot, d.BootKnown = f, true
		}
		if res, err := cl.GetLanConfigParam(ctx, lanChannel, types.LanConfigParamSelector_MAC, 0, 0); err != nil {
			problem("MAC address", err)
		} else if len(res.ParamData) >= 6 {
			m := res.ParamData[:6]
			d.MAC = fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
		}
		if ps, err := cl.GetChannelPayloadSupport(ctx, lanChannel); err != nil {
			problem("SOL support", err)
		} else {
			d.SOLAvailable = ps.PayloadTypeSOL
		}
		return nil
	})
	return d, err
}

// lanChannel is the LAN channel of nearly every BMC (ipmitool's default too).
const lanChannel = 1
