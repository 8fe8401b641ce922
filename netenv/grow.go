package netenv

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
)

// A built environment changes with what it wires: a simulated rack gains a
// server (its BMC's namespace and veth) or loses one. Grow and Shrink do
// that on a live environment, recording as Create does, so Teardown still
// removes exactly what exists.

// Grow adds namespaces and veths (on bridges the environment has) to a
// built environment, recording each item before making it. On failure it
// removes what it made of them.
func (e *Env) Grow(namespaces []string, veths []Veth) error {
	var madeNS, madeVeths []string // recorded, so Shrink may remove them
	undo := func(err error) error {
		if uerr := e.Shrink(madeNS, madeVeths); uerr != nil {
			err = errors.Join(err, fmt.Errorf("while cleaning up after the failure: %w", uerr))
		}
		return err
	}
	for _, ns := range namespaces {
		if NamespaceExists(ns) {
			return undo(fmt.Errorf("network namespace %s exists already and is not ours", ns))
		}
		e.Topology.Namespaces = append(e.Topology.Namespaces, ns)
		e.rec.Topology = e.Topology
		madeNS = append(madeNS, ns)
		if err := e.note(item{Kind: kindNamespace, Name: ns}); err != nil {
			return undo(err)
		}
		if err := createNamespace(ns); err != nil {
			return undo(err)
		}
	}
	for _, v := range veths {
		if exists(v.Host) {
			return undo(fmt.Errorf("veth %s exists already and is not ours", v.Host))
		}
		e.Topology.Veths = append(e.Topology.Veths, v)
		e.rec.Topology = e.Topology
		madeVeths = append(madeVeths, v.Host)
		if err := e.makeVeth(v); err != nil {
			return undo(err)
		}
	}
	return nil
}

// Shrink removes veths (by host name) and namespaces that the environment
// made, and forgets them in its record. Ones already gone are fine, so an
// interrupted Shrink can be run again.
func (e *Env) Shrink(namespaces []string, vethHosts []string) error {
	var errs []error
	for _, h := range vethHosts {
		if l, err := netlink.LinkByName(h); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("while deleting interface %s: %w", h, err))
			}
		}
	}
	for _, ns := range namespaces {
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // still recorded: Teardown tries again
	}
	e.rec.Items = slices.DeleteFunc(e.rec.Items, func(it item) bool {
		return (it.Kind == kindVeth && slices.Contains(vethHosts, it.Name)) || (it.Kind == kindNamespace && slices.Contains(namespaces, it.Name))
	})
	e.Topology.Veths = slices.DeleteFunc(e.Topology.Veths, func(v Veth) bool { return slices.Contains(vethHosts, v.Host) })
	e.Topology.Namespaces = slices.DeleteFunc(e.Topology.Namespaces, func(ns string) bool { return slices.Contains(namespaces, ns) })
	e.rec.Topology = e.Topology
	return e.rec.save(e.path)
}
