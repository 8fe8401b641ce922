package plan

import (
	"fmt"
	"sort"
	"time"
)

// A rack lives after its first day: servers are added (new rows get
// addresses and hostnames, nobody is renumbered: alloc.go), replaced (a new
// machine with new MACs takes a broken one's place) and retired (a machine
// leaves). What the plan must remember of the last two is here, in
// plan.json, so that every later plan — of any command, in any process —
// agrees:
//
//   - A replacement is recorded first (Replace), before nodes.csv changes.
//     The plan made once the new row is in nodes.csv moves the old
//     machine's hostname and addresses to the new MACs; until then the old
//     row is planned as before. So a crash between the two writes changes
//     nothing, and running racker replace again finishes the job.
//   - A retired machine's MACs are remembered (Retire): the boot services
//     refuse them (a retired server that is powered on again, or a broken
//     one still cabled, gets no address, even from a dynamic pool), and its
//     addresses stay reserved for a cool-down period, so they are not handed
//     to a new machine while the old one may still use them.

// Retired is what the plan remembers of one MAC of a machine that left the
// rack (retired, or replaced by another).
type Retired struct {
	// Hostname the machine had, for messages.
	Hostname string `json:"hostname,omitempty"`
	// Since is when it left.
	Since time.Time `json:"since"`
	// Until is the end of the cool-down: the MAC's address stays reserved
	// until then (zero: none was kept). The MAC stays refused after it,
	// until a row of nodes.csv names it again.
	Until time.Time `json:"until,omitzero"`
	// ReplacedBy is the primary MAC of the machine that took its place.
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// Replacement is a recorded racker replace: the old machine whose hostname
// and addresses a new row's MACs take, applied by the first plan that sees
// the new row.
type Replacement struct {
	OldPrimaryMAC   string    `json:"old_primary_mac"`
	OldBMCMAC       string    `json:"old_bmc_mac"`
	OldSecondaryMAC string    `json:"old_secondary_mac,omitempty"`
	NewBMCMAC       string    `json:"new_bmc_mac"`
	Since           time.Time `json:"since"`
}

// DefaultCoolDown is how long a retired machine's addresses stay reserved.
const DefaultCoolDown = 24 * time.Hour

// Replace records that the machine old is replaced by the one with the
// given MACs. Nothing else changes until nodes.csv has the new row (the
// caller rewrites it next); recording the same replacement again is a
// no-op, so an interrupted racker replace can be run again.
func Replace(alloc Allocator, old Node, newPrimary, newBMC, newSecondary string, now time.Time) error {
	if old.Role == Management {
		return fmt.Errorf("replacing %s: that is the management node, where Racker runs", old.Hostname)
	}
	return alloc.Update(func(st *State) error {
		if r, ok := st.Replacements[newPrimary]; ok {
			if r.OldPrimaryMAC != old.PrimaryMAC {
				return fmt.Errorf("replacing %s by %s: %s is already recorded as the replacement of %s", old.PrimaryMAC, newPrimary, newPrimary, r.OldPrimaryMAC)
			}
			return nil
		}
		if st.Replacements == nil {
			st.Replacements = map[string]Replacement{}
		}
		st.Replacements[newPrimary] = Replacement{OldPrimaryMAC: old.PrimaryMAC, OldBMCMAC: old.BMCMAC,
			OldSecondaryMAC: old.SecondaryMAC, NewBMCMAC: newBMC, Since: now.UTC()}
		_ = newSecondary // the secondary NIC holds no internal address
		return nil
	})
}

// Retire records that machine n left the rack at now: its MACs are refused
// from now on and its addresses stay reserved until now+coolDown. Its
// hostname is free for a later machine. The caller removes its row from
// nodes.csv first: a MAC that a row names is a node, never retired (an
// operator who puts a retired machine's row back brings it back).
func Retire(alloc Allocator, n Node, now time.Time, coolDown time.Duration) error {
	if n.Role == Management {
		return fmt.Errorf("retiring %s: that is the management node, where Racker runs", n.Hostname)
	}
	return alloc.Update(func(st *State) error {
		if st.Retired == nil {
			st.Retired = map[string]Retired{}
		}
		for _, mac := range []string{n.PrimaryMAC, n.BMCMAC, n.SecondaryMAC} {
			if mac == "" {
				continue
			}
			if _, ok := st.Retired[mac]; ok {
				continue // retired already: keep the first date
			}
			st.Retired[mac] = Retired{Hostname: n.Hostname, Since: now.UTC(), Until: now.Add(coolDown).UTC()}
		}
		if st.Hostnames[n.PrimaryMAC] == n.Hostname {
			delete(st.Hostnames, n.PrimaryMAC)
		}
		return nil
	})
}

// applyLifecycle brings the state in line with the rack's rows before
// addresses and hostnames are allocated: a recorded replacement whose new
// row is present takes the old machine's hostname and addresses; a retired
// MAC that cooled down gives its address back; a retired MAC that a row
// names again is a node again.
func applyLifecycle(p *Plan, st *State, now time.Time) {
	key := p.Subnet.String()
	held := st.Addresses[key]
	rows := map[string]bool{}
	for _, n := range p.Servers() {
		for _, mac := range []string{n.PrimaryMAC, n.BMCMAC, n.SecondaryMAC} {
			if mac != "" {
				rows[mac] = true
			}
		}
	}
	for newPrimary, r := range st.Replacements {
		if !rows[newPrimary] {
			continue // nodes.csv not rewritten yet: the old row is still the node
		}
		if rows[r.OldPrimaryMAC] {
			// Both rows: nodes.csv holds the old machine as well as the new
			// (added by hand). The old one stays itself; the new one is a
			// new machine.
			delete(st.Replacements, newPrimary)
			continue
		}
		if _, ok := held[newPrimary]; !ok {
			if a, ok := held[r.OldPrimaryMAC]; ok {
				held[newPrimary] = a
			}
		}
		if _, ok := held[r.NewBMCMAC]; !ok && r.NewBMCMAC != "" {
			if a, ok := held[r.OldBMCMAC]; ok {
				held[r.NewBMCMAC] = a
			}
		}
		delete(held, r.OldPrimaryMAC)
		delete(held, r.OldBMCMAC)
		h := st.Hostnames[r.OldPrimaryMAC]
		if _, ok := st.Hostnames[newPrimary]; !ok && h != "" {
			st.Hostnames[newPrimary] = h
		}
		delete(st.Hostnames, r.OldPrimaryMAC)
		if st.Retired == nil {
			st.Retired = map[string]Retired{}
		}
		for _, mac := range []string{r.OldPrimaryMAC, r.OldBMCMAC, r.OldSecondaryMAC} {
			if mac != "" {
				st.Retired[mac] = Retired{Hostname: h, Since: r.Since, ReplacedBy: newPrimary}
			}
		}
		delete(st.Replacements, newPrimary)
	}
	for mac, r := range st.Retired {
		if rows[mac] {
			// A row names it again: the operator brought it back.
			delete(st.Retired, mac)
			continue
		}
		if !r.Until.IsZero() && !now.Before(r.Until) {
			delete(held, mac)
			r.Until = time.Time{}
			st.Retired[mac] = r
		}
	}
}

// retiredMACs lists the MACs the boot services refuse, sorted.
func retiredMACs(st *State) []string {
	out := make([]string, 0, len(st.Retired))
	for mac := range st.Retired {
		out = append(out, mac)
	}
	sort.Strings(out)
	return out
}

// IsRetired says whether mac belongs to a machine that left the rack.
func (p *Plan) IsRetired(mac string) bool {
	i := sort.SearchStrings(p.Retired, mac)
	return i < len(p.Retired) && p.Retired[i] == mac
}
