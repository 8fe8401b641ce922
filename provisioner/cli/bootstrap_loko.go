package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/plan"
)

// lokoRun is lokoctl applying the Lokomotive configuration while bootstrap
// PXE-boots the nodes, as upstream Racker ran it: lokoctl's Terraform
// registers every node in matchbox, then waits for the nodes to come up
// through matchbox's profiles (which Racker's BMC driving makes happen),
// then installs Kubernetes.
type lokoRun struct {
	done   chan struct{}
	err    error // lokoctl's end; read after done is closed
	cancel context.CancelFunc
}

// startLokoctl writes the configuration and starts lokoctl in the
// background; stop ends it if bootstrap gives up first.
func startLokoctl(ctx context.Context, in cluster.Input) *lokoRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &lokoRun{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.err = cluster.Apply(ctx, cluster.Lokomotive, in)
	}()
	return r
}

func (r *lokoRun) stop() { r.cancel(); <-r.done }

// wait is lokoctl's end.
func (r *lokoRun) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// registerTimeout bounds the wait for lokoctl's matchbox registrations
// (Terraform's init and plan come first; they take minutes, not hours).
const registerTimeout = 30 * time.Minute

// waitRegistered waits until a matchbox group selects every node (lokoctl
// registered it), so their netboot chains to matchbox's profiles and not
// to Racker's own install; it fails when lokoctl ends first. It says on
// out how many are registered whenever that changes.
func (r *lokoRun) waitRegistered(ctx context.Context, out io.Writer, boot *api.Client, nodes []plan.Node, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	want := map[string]string{}
	for _, n := range nodes {
		want[n.PrimaryMAC] = n.Hostname
	}
	last := -1
	var ns []api.Node
	poll1 := func() bool {
		got, err := boot.Nodes(ctx)
		if err != nil {
			return false
		}
		ns = got
		registered := 0
		for _, n := range ns {
			if _, ok := want[n.PrimaryMAC]; ok && n.Matchbox {
				registered++
			}
		}
		if registered != last {
			fmt.Fprintf(out, "bootstrap: lokoctl registered %d of %d node(s) in matchbox\n", registered, len(want))
			last = registered
		}
		return registered == len(want)
	}
	for {
		if poll1() {
			return nil
		}
		select {
		case <-r.done:
			if r.err != nil {
				return r.err
			}
			if poll1() { // registered just before it ended
				return nil
			}
			return fmt.Errorf("lokoctl finished, but matchbox selects only %d of the %d node(s) by MAC: %s", max(last, 0), len(want), missing(ns, want))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("lokoctl registered %d of %d node(s) in matchbox within %s: %s", max(last, 0), len(want), registerTimeout, missing(ns, want))
			}
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// missing names the nodes no matchbox group selects.
func missing(ns []api.Node, want map[string]string) string {
	got := map[string]bool{}
	for _, n := range ns {
		got[n.PrimaryMAC] = n.Matchbox
	}
	var names []string
	for mac, name := range want {
		if !got[mac] {
			names = append(names, name+" ("+mac+")")
		}
	}
	if len(names) == 0 {
		return "none missing"
	}
	sort.Strings(names)
	return "missing " + strings.Join(names, ", ")
}

// lokomotiveCanVerify refuses, before any node is touched, images that
// Lokomotive's installs would refuse: its install profiles run
// flatcar-install without -k, so a node checks the image against the
// key built into the installer, and a mirror's own key (--image-key)
// fails every install after the download. A boot services release that
// does not say (an older racker serve) is let through.
func lokomotiveCanVerify(ctx context.Context, boot *api.Client) error {
	rel, err := boot.Release(ctx)
	if err != nil || rel.OtherImageKey == "" {
		return nil
	}
	return fmt.Errorf("the boot services serve %s %s signed with key %s, not the OS's own: Lokomotive's install profiles run flatcar-install without -k, so every node would refuse the image after downloading it; serve images signed with the OS's own key (racker serve without --image-key) or install plain Flatcar (racker bootstrap --provision flatcar --replan), whose install config passes the key",
		rel.OS, rel.Version, rel.OtherImageKey)
}
