package rack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/racker/racker/simulator/vbmc"
)

// DefaultBMCProtocols are what a server's virtual BMC serves unless
// --bmc-protocols says otherwise: both, as most servers sold today do.
var DefaultBMCProtocols = []string{string(vbmc.ProtocolIPMI), string(vbmc.ProtocolRedfish)}

// ParseBMCProtocols reads --bmc-protocols values as ParseDisks reads
// --disks: "LIST" for every server, "TYPE=LIST" for one node type, LIST
// being ipmi, redfish or both comma-separated; a later value wins. types
// are the rack's node types; naming another is an error. It returns each
// type's protocols.
//
//	--bmc-protocols ipmi,redfish --bmc-protocols new=redfish
func ParseBMCProtocols(specs, types []string) (map[string][]string, error) {
	def := DefaultBMCProtocols
	byType := map[string][]string{}
	for _, spec := range specs {
		typ, list, hasType := strings.Cut(spec, "=")
		if !hasType {
			typ, list = "", spec
		}
		typ = strings.TrimSpace(typ)
		if hasType && typ == "" {
			return nil, fmt.Errorf("--bmc-protocols %q: no node type before '='", spec)
		}
		if hasType && !slices.Contains(types, typ) {
			return nil, fmt.Errorf("--bmc-protocols %q: the rack has no node type %q (types: %s)", spec, typ, strings.Join(types, ", "))
		}
		ps, err := vbmc.ParseProtocols(list)
		if err != nil {
			return nil, fmt.Errorf("--bmc-protocols %q: %w", spec, err)
		}
		var names []string
		for _, p := range ps {
			names = append(names, string(p))
		}
		if hasType {
			byType[typ] = names
		} else {
			def = names
		}
	}
	out := map[string][]string{}
	for _, t := range types {
		out[t] = def
		if ps, ok := byType[t]; ok {
			out[t] = ps
		}
	}
	return out, nil
}

// VBMCProtocols are the protocols of a server's virtual BMC. A rack made
// before Redfish existed records none: its vBMCs serve IPMI, as they did.
func (m Machine) VBMCProtocols() []vbmc.Protocol {
	if len(m.BMCProtocols) == 0 {
		return []vbmc.Protocol{vbmc.ProtocolIPMI}
	}
	var out []vbmc.Protocol
	for _, p := range m.BMCProtocols {
		out = append(out, vbmc.Protocol(p))
	}
	return out
}

// RedfishCert is where a server's vBMC keeps its self-signed certificate
// and key, so Racker's pin of it holds across vBMC restarts, as a real
// BMC's certificate does.
func (s *State) RedfishCert(node string) (cert, key string) {
	return filepath.Join(s.machineDir(node), "redfish.crt"), filepath.Join(s.machineDir(node), "redfish.key")
}

// stateNodeTypes is Racker's node-types.json in the management node.
func (s *State) stateNodeTypes() string { return s.Node().Path("/opt/racker-state/node-types.json") }

// writeNodeTypes tells Racker, as a rack's operator would, that the types
// whose BMCs speak no IPMI are reached over Redfish: bmc_protocol in
// node-types.json in its state folder. Settings already there (an
// install_disk, another type's) are kept; nothing is written when every
// BMC speaks IPMI.
func writeNodeTypes(s *State) error {
	redfishOnly := map[string]bool{}
	for _, m := range s.Machines[1:] {
		if !slices.Contains(m.VBMCProtocols(), vbmc.ProtocolIPMI) {
			redfishOnly[m.Type] = true
		}
	}
	if len(redfishOnly) == 0 || s.NoBMC {
		return nil
	}
	path := s.stateNodeTypes()
	types := map[string]map[string]any{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("while reading Racker's node types: %w", err)
	default:
		if err := json.Unmarshal(b, &types); err != nil {
			return fmt.Errorf("while reading Racker's node types in %s: %w", path, err)
		}
	}
	for t := range redfishOnly {
		if types[t] == nil {
			types[t] = map[string]any{}
		}
		types[t]["bmc_protocol"] = "redfish"
	}
	out, _ := json.MarshalIndent(types, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while writing Racker's node types: %w", err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		return fmt.Errorf("while writing Racker's node types: %w", err)
	}
	return nil
}
