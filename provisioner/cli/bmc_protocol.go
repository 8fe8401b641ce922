package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/racker/racker/provisioner/bmc"
)

// How Racker reaches a node's BMC: --bmc-driver for every node when given,
// else the node type's bmc_protocol in STATE/node-types.json, else IPMI.
// "auto" asks Redfish first, then IPMI, and remembers what answered
// (bmc.Choose, STATE/bmc-protocols.json).

// bmcDrivers are the values of --bmc-driver; "" is "by node type".
var bmcDrivers = []string{"ipmi", "redfish", "auto", "libvirt"}

const bmcDriverHelp = "how to reach the nodes' BMCs: ipmi, redfish, auto (Redfish, else IPMI; remembered per BMC), or libvirt (local VMs without BMCs); default: each node type's bmc_protocol in STATE/node-types.json, else ipmi"

// bmcProtocols are the node types' protocols, read from node-types.json.
// Only bmc_protocol is read here; the boot services read (and check) the
// other settings of the same file.
func readBMCProtocols(stateDir string) (map[string]string, error) {
	path := filepath.Join(stateDir, "node-types.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading node type settings: %w", err)
	}
	var raw map[string]struct {
		BMCProtocol string `json:"bmc_protocol"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&raw); err != nil {
		return nil, fmt.Errorf("reading node type settings %s: %w", path, err)
	}
	out := map[string]string{}
	for t, s := range raw {
		switch s.BMCProtocol {
		case "":
		case "ipmi", "redfish", "auto":
			out[t] = s.BMCProtocol
		default:
			return nil, fmt.Errorf("reading node type settings %s: type %s: bmc_protocol %q: want ipmi, redfish or auto", path, t, s.BMCProtocol)
		}
	}
	return out, nil
}

// bmcReach turns a node and its BMC's address into the URL of its BMC.
type bmcReach struct {
	driver  string            // --bmc-driver; "" by node type
	types   map[string]string // node type → bmc_protocol
	choices bmc.ChoiceStore
	opts    bmc.Options // what the probes of auto open with
}

// newBMCReach checks driver and reads the node types' protocols.
func (env *Env) newBMCReach(driver string, opts bmc.Options) (*bmcReach, error) {
	if driver != "" && driver != "fake" && !slices.Contains(bmcDrivers, driver) {
		return nil, fmt.Errorf("--bmc-driver %q: want ipmi, redfish, auto or libvirt", driver)
	}
	r := &bmcReach{driver: driver, opts: opts,
		choices: &bmc.FileChoices{Path: filepath.Join(env.StateDir, bmc.ChoicesFile)}}
	if driver == "" {
		types, err := readBMCProtocols(env.StateDir)
		if err != nil {
			return nil, err
		}
		r.types = types
	}
	return r, nil
}

// protocol is how a node of type typ is reached.
func (r *bmcReach) protocol(typ string) string {
	if r.driver != "" {
		return r.driver
	}
	if p := r.types[typ]; p != "" {
		return p
	}
	return "ipmi"
}

// url is the BMC URL of a node (its primary and BMC MAC, type and the
// BMC's current address); node names it in errors.
func (r *bmcReach) url(ctx context.Context, node, primaryMAC, bmcMAC, typ string, addr netip.Addr) (string, error) {
	proto := r.protocol(typ)
	switch proto {
	case "libvirt":
		return "libvirt:///", nil
	case "fake":
		return "fake://" + fakeBMCName(primaryMAC), nil
	}
	if !addr.IsValid() {
		return "", fmt.Errorf("node %s: its BMC has no address on the internal network (the management node's BMC is on the public network); use --bmc %s://ADDRESS", primaryMAC, proto)
	}
	switch proto {
	case "redfish":
		return "redfish://" + addr.String(), nil
	case "auto":
		opts := r.opts
		opts.Node = node
		return bmc.Choose(ctx, bmcMAC, "redfish://"+addr.String(), "ipmi://"+addr.String(), r.choices, opts)
	default:
		return "ipmi://" + addr.String(), nil
	}
}

// bmcOptionsFor adds to o what every Redfish BMC needs from the CLI: the
// certificates pinned on first use in STATE/bmc-pins.json, and --insecure.
func (env *Env) bmcOptionsFor(o bmc.Options, insecure bool) bmc.Options {
	o.Pins = &bmc.FilePins{Path: filepath.Join(env.StateDir, bmcPinsFile)}
	o.Insecure = insecure
	return o
}

// bmcPinsFile keeps the Redfish BMCs' certificate pins in the state folder.
const bmcPinsFile = bmc.PinsFile

const insecureHelp = "do not check Redfish BMCs' TLS certificates (no pinning): anyone on the path then sees the BMC password"
