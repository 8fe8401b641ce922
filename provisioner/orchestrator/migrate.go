package orchestrator

import (
	"encoding/json"
	"fmt"
)

// legacyNode is what the previous release's state format kept about a
// node's sub-state in booleans.
type legacyNode struct {
	Phase         Phase `json:"phase"`
	Started       bool  `json:"started"`
	NeedReinstall bool  `json:"need_reinstall"`
	DiskBootSet   bool  `json:"disk_boot_set"`
	BootedSeen    bool  `json:"booted_seen"`
	PowerOffDone  bool  `json:"power_off_done"`
}

// migrateV1 turns the previous release's booleans (in b, a StateFile
// without a version) into the phases that replaced them, in st (decoded
// from b already).
func migrateV1(b []byte, st *State) error {
	var old struct {
		Nodes map[string]legacyNode `json:"nodes"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return err
	}
	for mac, o := range old.Nodes {
		n := st.Nodes[mac]
		if n == nil {
			continue
		}
		p, err := o.phase()
		if err != nil {
			return fmt.Errorf("node %s: %w", mac, err)
		}
		if p == Reinstall {
			n.NeedReinstall = false // the reinstall phase has taken the order
		}
		n.Phase = p
	}
	st.Version = stateVersionComplete
	return nil
}

// phase is the phase a legacy record's phase and booleans stand for.
func (o legacyNode) phase() (Phase, error) {
	switch o.Phase {
	case Pending:
		if o.Started {
			return BMCCheck, nil // holding a slot, checking the BMC
		}
		return Pending, nil
	case BMCReachable:
		if o.NeedReinstall {
			return Reinstall, nil
		}
		return BMCReachable, nil
	case Installed:
		switch {
		case o.DiskBootSet && o.BootedSeen:
			return Booted, nil
		case o.DiskBootSet:
			return FirstBoot, nil
		case o.BootedSeen:
			return AwaitingDiskBoot, nil
		}
		return Installed, nil
	case Excluded:
		if o.PowerOffDone {
			return Excluded, nil
		}
		return Excluding, nil
	case PXERequested, Netbooting, Installing, Booted, Ready, Failed:
		return o.Phase, nil
	}
	return "", fmt.Errorf("phase %q is not one the previous release wrote", o.Phase)
}
