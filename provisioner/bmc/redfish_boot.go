package bmc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"
)

// Boot flags over Redfish are ComputerSystem.Boot's three override
// properties, the same request the IPMI flags make:
//
//	Device      → BootSourceOverrideTarget   Pxe | Hdd | None
//	Persistent  → BootSourceOverrideEnabled  Continuous (else Once; Disabled for none)
//	EFI         → BootSourceOverrideMode     UEFI | Legacy
//
// SetBoot writes them with one PATCH (If-Match with the ETag just read, so
// a concurrent change is not overwritten), reads the system back and
// writes again when they differ, like the IPMI driver does with parameter
// 5. A BMC that does not report BootSourceOverrideMode is not sent one
// (many refuse unknown properties) and the result is reported unverified.

// redfishBoot is the PATCH for f; withMode adds BootSourceOverrideMode.
func redfishBoot(f BootFlags, withMode bool) redfish.Boot {
	b := redfish.Boot{
		BootSourceOverrideEnabled: redfish.DisabledBootSourceOverrideEnabled,
		BootSourceOverrideTarget:  redfish.NoneBootSourceOverrideTarget,
	}
	if f.Valid && f.Device != DeviceNone {
		b.BootSourceOverrideEnabled = redfish.OnceBootSourceOverrideEnabled
		if f.Persistent {
			b.BootSourceOverrideEnabled = redfish.ContinuousBootSourceOverrideEnabled
		}
		b.BootSourceOverrideTarget = redfish.PxeBootSourceOverrideTarget
		if f.Device == DeviceDisk {
			b.BootSourceOverrideTarget = redfish.HddBootSourceOverrideTarget
		}
	}
	if withMode {
		b.BootSourceOverrideMode = redfish.LegacyBootSourceOverrideMode
		if f.EFI {
			b.BootSourceOverrideMode = redfish.UEFIBootSourceOverrideMode
		}
	}
	return b
}

// bootFlagsOf reads the override as BootFlags. A Once override a boot used
// up reads Disabled with its target kept: Valid=false, as IPMI's valid bit.
// Targets other than Pxe, Hdd and None (Cd, UefiHttp, …) are an error
// naming them, as DecodeBootFlags does with other IPMI selectors.
func bootFlagsOf(sys *redfish.ComputerSystem) (BootFlags, error) {
	b := sys.Boot
	f := BootFlags{Device: DeviceNone, EFI: b.BootSourceOverrideMode == redfish.UEFIBootSourceOverrideMode}
	switch b.BootSourceOverrideEnabled {
	case redfish.OnceBootSourceOverrideEnabled:
		f.Valid = true
	case redfish.ContinuousBootSourceOverrideEnabled:
		f.Valid, f.Persistent = true, true
	case redfish.DisabledBootSourceOverrideEnabled, "":
	default:
		return f, fmt.Errorf("%s: unknown BootSourceOverrideEnabled %q", sys.ODataID, b.BootSourceOverrideEnabled)
	}
	switch b.BootSourceOverrideTarget {
	case redfish.PxeBootSourceOverrideTarget:
		f.Device = DevicePXE
	case redfish.HddBootSourceOverrideTarget:
		f.Device = DeviceDisk
	case redfish.NoneBootSourceOverrideTarget, "":
	default:
		return f, fmt.Errorf("%s: boot override target %q is neither Pxe nor Hdd", sys.ODataID, b.BootSourceOverrideTarget)
	}
	return f, nil
}

// bootFacts are what the system says about its override beyond the values.
type bootFacts struct {
	targets []string // BootSourceOverrideTarget@Redfish.AllowableValues, if listed
	hasMode bool     // it reports BootSourceOverrideMode at all
}

func bootFactsOf(sys *redfish.ComputerSystem) bootFacts {
	var raw struct {
		Boot map[string]json.RawMessage
	}
	var bf bootFacts
	if json.Unmarshal(sys.RawData, &raw) != nil {
		return bf
	}
	_, bf.hasMode = raw.Boot["BootSourceOverrideMode"]
	_ = json.Unmarshal(raw.Boot["BootSourceOverrideTarget@Redfish.AllowableValues"], &bf.targets)
	return bf
}

// sameRedfish says whether flags read back are the ones written; mode
// only when the BMC reports it, persistence only for an active override.
func sameRedfish(want, got BootFlags, modeKnown bool) bool {
	if want.Valid != got.Valid || (modeKnown && want.EFI != got.EFI) {
		return false
	}
	if !want.Valid || want.Device == DeviceNone {
		return got.Device == DeviceNone || !got.Valid
	}
	return want.Device == got.Device && want.Persistent == got.Persistent
}

func (c *redfishController) SetBoot(ctx context.Context, f BootFlags) (bool, error) {
	f, err := f.normalize()
	if err != nil {
		return false, c.fail("setting boot flags", err)
	}
	verified := false
	err = c.do(ctx, fmt.Sprintf("setting boot device %s", f), func(r rfConn) error {
		var last BootFlags
		var lastErr error
		reason := ""
		for write := 1; write <= c.opts.BootRetries; write++ {
			sys, err := c.getSystem(r)
			if err != nil {
				return err
			}
			facts := bootFactsOf(sys)
			want := redfishBoot(f, facts.hasMode)
			if t := string(want.BootSourceOverrideTarget); len(facts.targets) > 0 && !slices.Contains(facts.targets, t) {
				return permanentError{fmt.Errorf("%s: the BMC does not offer boot override target %s (it offers %v)", sys.ODataID, t, facts.targets)}
			}
			if err := sys.SetBoot(want); err != nil {
				var re *RedfishError
				if errors.As(err, &re) && re.Status == http.StatusPreconditionFailed {
					// The system changed since it was read: read it again.
					reason = err.Error()
					continue
				}
				return named("PATCH", sys.ODataID, err)
			}
			if sys, err = c.getSystem(r); err != nil {
				return err
			}
			last, lastErr = bootFlagsOf(sys)
			if lastErr == nil && sameRedfish(f, last, facts.hasMode) && facts.hasMode {
				verified = true
				return nil
			}
			switch {
			case lastErr != nil:
				reason = lastErr.Error()
			case !facts.hasMode && sameRedfish(f, last, false):
				// Nothing more will be learnt by writing again.
				c.opts.Logger.Warn("BMC took the boot override but does not report BootSourceOverrideMode; EFI vs legacy unverified",
					"node", c.opts.Node, "bmc", c.addr, "flags", f.String())
				return nil
			default:
				reason = "read back " + last.String()
			}
			c.opts.Logger.Debug("boot override did not read back as written", "node", c.opts.Node, "bmc", c.addr,
				"write", write, "wrote", fmt.Sprintf("%+v", want), "reason", reason)
			if write < c.opts.BootRetries {
				select {
				case <-time.After(time.Duration(write) * 100 * time.Millisecond):
				case <-r.ctx.Done():
					return r.ctx.Err()
				}
			}
		}
		c.opts.Logger.Warn("BMC accepted the boot override but does not report it back; going on unverified",
			"node", c.opts.Node, "bmc", c.addr, "flags", f.String(), "writes", c.opts.BootRetries, "reason", reason)
		return nil
	})
	return verified, err
}

func (c *redfishController) Boot(ctx context.Context) (BootFlags, error) {
	var f BootFlags
	err := c.do(ctx, "reading boot flags", func(r rfConn) error {
		sys, err := c.getSystem(r)
		if err != nil {
			return err
		}
		if f, err = bootFlagsOf(sys); err != nil {
			return permanentError{err}
		}
		return nil
	})
	return f, err
}

// Diag collects the system's identity, power, boot override and health and
// the BMC's firmware and MAC. Only reaching the system is an error; each
// other part the BMC cannot answer is listed in Problems.
func (c *redfishController) Diag(ctx context.Context) (Diagnostics, error) {
	d := Diagnostics{Driver: "redfish", Address: c.addr, Console: ErrNoConsole.Error()}
	err := c.do(ctx, "running diagnostics", func(r rfConn) error {
		d.Problems = nil
		problem := func(what string, err error) { d.Problems = append(d.Problems, what+": "+err.Error()) }
		sys, err := c.getSystem(r)
		if err != nil {
			return err
		}
		root, _ := c.serviceRoot(r.ctx) // read by getSystem already
		c.authMu.Lock()
		a := c.auth
		c.authMu.Unlock()
		d.Protocol = "Redfish " + root.version + " over HTTPS, "
		if a.basic {
			d.Protocol += "Basic authentication"
		} else {
			d.Protocol += "session"
		}
		d.TLS = c.tlsState()
		d.Manufacturer, d.Model, d.SerialNumber = sys.Manufacturer, sys.Model, sys.SerialNumber
		d.BIOSVersion = sys.BIOSVersion
		d.BootMode = string(sys.Boot.BootSourceOverrideMode)
		d.Health = string(sys.Status.Health)
		if s, err := powerOf(sys); err != nil {
			problem("power", err)
		} else {
			d.Power = s
		}
		if f, err := bootFlagsOf(sys); err != nil {
			problem("boot override", err)
		} else {
			d.Boot, d.BootKnown = f, true
		}
		m, err := c.manager(r, sys, root)
		if err != nil {
			problem("manager", err)
			return nil
		}
		d.Firmware = m.FirmwareVersion
		nics, err := m.EthernetInterfaces()
		if err != nil {
			problem("manager network interfaces", err)
		}
		for _, n := range nics {
			if n.MACAddress != "" {
				d.MAC = n.MACAddress
				break
			}
		}
		return nil
	})
	return d, err
}

// manager is the BMC itself: the system's ManagedBy, else the only member
// of Managers.
func (c *redfishController) manager(r rfConn, sys *redfish.ComputerSystem, root rootLinks) (*redfish.Manager, error) {
	ms, err := sys.ManagedBy()
	if err == nil && len(ms) > 0 {
		return ms[0], nil
	}
	if root.managers == "" {
		return nil, errors.New("the service lists no managers")
	}
	col, err := common.GetCollection(r, root.managers)
	if err != nil {
		return nil, err
	}
	if len(col.ItemLinks) == 0 {
		return nil, fmt.Errorf("GET %s: no manager listed", root.managers)
	}
	m, err := redfish.GetManager(r, col.ItemLinks[0])
	if err != nil {
		return nil, named("GET", col.ItemLinks[0], err)
	}
	return m, nil
}
