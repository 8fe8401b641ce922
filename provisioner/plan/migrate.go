package plan

import (
	"net/netip"
	"strconv"
	"strings"
)

// migrate brings a plan.json of an older format up to StateVersion, in
// memory (the next Update writes it).
//
// Version 0/1 (the first release) kept addresses and hostnames but not the
// choices they came from, so every command without flags planned with the
// defaults again — renaming a rack planned with --cluster-name and
// renumbering one planned with --subnet. The choices are read back from
// what the file holds, where it says so without doubt:
//   - subnet: the only subnet addresses were held in;
//   - cluster-name: the common NAME of NAME-controller-N and NAME-worker-N;
//   - controllers: how many NAME-controller-N there are, when 1 or 3.
//
// What the file cannot say (the controller type, storage, exclusions)
// stays unremembered: the next command that writes the plan remembers its
// flags (or their defaults), as a first plan does.
func migrate(st *State) {
	if st.Version >= StateVersion {
		return
	}
	if st.Choices == nil {
		st.Choices = map[string]string{}
	}
	if len(st.Addresses) == 1 {
		for subnet := range st.Addresses {
			if p, err := netip.ParsePrefix(subnet); err == nil {
				st.Choices["subnet"] = p.Masked().String()
			}
		}
	}
	name, controllers := "", 0
	for _, h := range st.Hostnames {
		n, role, ok := splitHostname(h)
		if !ok || (name != "" && n != name) {
			name = ""
			controllers = -1
			break
		}
		name = n
		if role == Controller {
			controllers++
		}
	}
	if name != "" {
		st.Choices["cluster-name"] = name
		if controllers == 1 || controllers == 3 {
			st.Choices["controllers"] = strconv.Itoa(controllers)
		}
	}
	if len(st.Choices) == 0 {
		st.Choices = nil
	}
}

// splitHostname reads NAME-ROLE-N, Racker's hostname scheme.
func splitHostname(h string) (name string, role Role, ok bool) {
	for _, r := range []Role{Controller, Worker} {
		i := strings.LastIndex(h, "-"+string(r)+"-")
		if i > 0 && isIndex(h[i+len(r)+2:]) {
			return h[:i], r, true
		}
	}
	return "", "", false
}
