package bmc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Choosing between Redfish and IPMI ("auto", a node type's bmc_protocol).
// A BMC that speaks both is driven over Redfish, whose TLS and sessions
// protect the password better than IPMI's RMCP+; one that has IPMI only
// (older servers) over IPMI. What answered is remembered per BMC, across
// operations and processes, because a fallback that is tried again on
// every failure is a downgrade anyone on the wire can cause: once Redfish
// worked for a BMC, it is spoken to over Redfish only, and a Redfish
// failure is an error, never a silent switch to IPMI.

// Protocols Choose returns.
const (
	ChoiceRedfish = "redfish"
	ChoiceIPMI    = "ipmi"
)

// ChoiceStore remembers which protocol answered for each BMC (keyed by
// something that identifies the BMC, such as its MAC).
type ChoiceStore interface {
	Choice(bmc string) (string, error)
	Chose(bmc, protocol string) error
}

// MemoryChoices remembers for the life of the process (tests).
type MemoryChoices struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *MemoryChoices) Choice(bmc string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[bmc], nil
}

func (c *MemoryChoices) Chose(bmc, protocol string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]string{}
	}
	if c.m[bmc] != ChoiceRedfish { // Redfish, once it answered, stays
		c.m[bmc] = protocol
	}
	return nil
}

// ChoicesFile is where the CLI keeps the choices, in the state folder. It
// is the file where the ipmi driver remembers the IPMI session protocol
// ("lanplus" or "lan", keyed by HOST:PORT): the same shape, a JSON object
// of BMC → {"protocol", "since"}, and the same lock, so one file says how
// each BMC is spoken to. Auto's entries are keyed by the BMC's MAC.
const ChoicesFile = "bmc-protocols.json"

// FileChoices keeps choices in ChoicesFile, read and written under an
// flock (racker serve's orchestrator and a CLI command agree), each write
// replacing the file atomically. Entries it does not know are kept.
type FileChoices struct {
	Path string
	mu   sync.Mutex
}

func (c *FileChoices) Choice(bmc string) (string, error) {
	var out string
	err := c.update(func(m map[string]protocolEntry) bool {
		out = m[bmc].Protocol
		return false
	})
	return out, err
}

func (c *FileChoices) Chose(bmc, protocol string) error {
	return c.update(func(m map[string]protocolEntry) bool {
		if cur := m[bmc].Protocol; cur == protocol || cur == ChoiceRedfish {
			return false
		}
		m[bmc] = protocolEntry{Protocol: protocol, Since: time.Now().UTC()}
		return true
	})
}

func (c *FileChoices) update(fn func(map[string]protocolEntry) bool) error {
	return updateProtocolFile(&c.mu, c.Path, fn)
}

// Choose says how to reach a BMC whose protocol is "auto": redfishURL or
// ipmiURL (the same BMC). The remembered choice for id wins; without one,
// Redfish is asked (a login and the power state), then IPMI, and the first
// that answers is remembered. A Redfish BMC that refuses the password or
// shows another certificate than the pinned one has answered: that is an
// error, not a reason to try IPMI.
func Choose(ctx context.Context, id, redfishURL, ipmiURL string, store ChoiceStore, opts Options) (string, error) {
	known, err := store.Choice(id)
	if err != nil {
		return "", fmt.Errorf("%sreading which protocol BMC %s answered before: %w", nodePrefix(opts.Node), id, err)
	}
	switch known {
	case ChoiceRedfish:
		return redfishURL, nil
	case ChoiceIPMI:
		return ipmiURL, nil
	}
	probe := opts
	probe.Tries = 1
	rfErr := answers(ctx, redfishURL, probe)
	if rfErr == nil {
		return redfishURL, remember(store, id, ChoiceRedfish, opts)
	}
	if errors.Is(rfErr, ErrAuth) || errors.Is(rfErr, ErrCertificateChanged) {
		return "", fmt.Errorf("%sBMC %s answered Redfish (not trying IPMI): %w", nodePrefix(opts.Node), id, rfErr)
	}
	ipErr := answers(ctx, ipmiURL, probe)
	if ipErr == nil {
		return ipmiURL, remember(store, id, ChoiceIPMI, opts)
	}
	return "", fmt.Errorf("%sBMC %s answers neither Redfish nor IPMI: %w", nodePrefix(opts.Node), id, errors.Join(rfErr, ipErr))
}

func answers(ctx context.Context, url string, opts Options) error {
	c, err := Open(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.PowerState(ctx)
	return err
}

func remember(store ChoiceStore, id, protocol string, opts Options) error {
	if err := store.Chose(id, protocol); err != nil {
		return fmt.Errorf("%sremembering that BMC %s answered %s: %w", nodePrefix(opts.Node), id, protocol, err)
	}
	opts.withDefaults().Logger.Info("BMC protocol chosen", "node", opts.Node, "bmc", id, "protocol", protocol)
	return nil
}
