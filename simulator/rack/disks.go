package rack

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/racker/racker/simulator/vm"
)

// DefaultDisks are a server's blank disks unless --disks says otherwise:
// two, so reprovision has another disk to wipe, each over the 10 GB that
// flatcar-install -s requires (sparse, so their size costs nothing).
var DefaultDisks = []string{vm.DefaultDiskSize, vm.DefaultDiskSize}

// diskSizeRE is a qemu-img size with a unit: K, M, G, T (powers of 1024).
var diskSizeRE = regexp.MustCompile(`^([1-9][0-9]*)([KMGT])$`)

// DiskPlan is the blank disks of each node type, from --disks.
type DiskPlan struct {
	Default []string
	ByType  map[string][]string
}

// For answers the disk sizes of a node of type t.
func (p DiskPlan) For(t string) []string {
	if d, ok := p.ByType[t]; ok {
		return d
	}
	if len(p.Default) > 0 {
		return p.Default
	}
	return DefaultDisks
}

// ParseDisks reads --disks values: "SIZES" for every node, or
// "TYPE=SIZES" for one node type, where SIZES is a comma-separated list of
// 1 to vm.MaxDisks qemu-img sizes with a unit (K, M, G, T: powers of 1024),
// one per disk in order (vda, vdb, …). A later value for the same type (or
// the default) wins. types are the rack's node types; naming another is an
// error, since the setting would silently apply to nothing.
//
//	--disks 10G,10G --disks uefi=4G,40G
func ParseDisks(specs, types []string) (DiskPlan, error) {
	p := DiskPlan{ByType: map[string][]string{}}
	for _, spec := range specs {
		typ, sizes, hasType := strings.Cut(spec, "=")
		if !hasType {
			typ, sizes = "", spec
		}
		typ = strings.TrimSpace(typ)
		if hasType && typ == "" {
			return p, fmt.Errorf("--disks %q: no node type before '='", spec)
		}
		if hasType && !slices.Contains(types, typ) {
			return p, fmt.Errorf("--disks %q: the rack has no node type %q (types: %s)", spec, typ, strings.Join(types, ", "))
		}
		var list []string
		for _, s := range strings.Split(sizes, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			m := diskSizeRE.FindStringSubmatch(s)
			if m == nil {
				return p, fmt.Errorf("--disks %q: disk size %q: want a number and a unit K, M, G or T, e.g. 10G (two disks: 10G,10G)", spec, s)
			}
			shift := map[string]uint{"K": 10, "M": 20, "G": 30, "T": 40}[m[2]]
			if n, err := strconv.ParseInt(m[1], 10, 64); err != nil || n > (64<<40)>>shift {
				return p, fmt.Errorf("--disks %q: disk size %s is over 64T", spec, s)
			}
			list = append(list, s)
		}
		if len(list) > vm.MaxDisks {
			return p, fmt.Errorf("--disks %q: %d disks; a node has at most %d", spec, len(list), vm.MaxDisks)
		}
		if hasType {
			p.ByType[typ] = list
		} else {
			p.Default = list
		}
	}
	return p, nil
}

// nodeTypes lists the servers' node types, each once.
func nodeTypes(ms []Machine) []string {
	var out []string
	for _, m := range ms {
		if m.Name != "mgmt" && !slices.Contains(out, m.Type) {
			out = append(out, m.Type)
		}
	}
	return out
}
