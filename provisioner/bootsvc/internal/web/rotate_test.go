package web

import (
	"bytes"
	"context"
	"testing"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// TestReprovisionRotatesTheToken: a reinstall starts a new install
// generation with a new token; the old one (which a node, or whoever read
// its disk, may still hold) no longer moves the node nor fetches a config.
func TestReprovisionRotatesTheToken(t *testing.T) {
	r := newRig(t)
	r.netboot(macB)
	old := r.installToken(macB, "127.0.0.2")
	for _, k := range []api.EventKind{api.KindInstalling, api.KindInstalled} {
		if code := r.callbackWith(clientFrom("127.0.0.2"), macB, k, "", old); code != 204 {
			t.Fatalf("%s with the first token: %d", k, code)
		}
	}
	before := r.node(macB)
	n, err := api.NewClient(r.http.URL).Reinstall(context.Background(), macB, true)
	if err != nil || n.InstallGeneration != before.InstallGeneration+1 {
		t.Fatalf("reinstall: %+v %v (before: generation %d)", n, err, before.InstallGeneration)
	}
	afterReinstall := r.node(macB)

	// The old token: refused for a callback and for the boot config, and
	// the node stays where the reinstall put it.
	if code := r.callbackWith(clientFrom("127.0.0.2"), macB, api.KindInstalled, "", old); !refused(code) {
		t.Errorf("installed callback with the previous generation's token: %d, want 403/429", code)
	}
	code, body, _ := r.do(clientFrom("127.0.0.2"), "GET", "/ignition?mac="+macB+"&phase=boot", nil, api.TokenHeader, api.TokenScheme+old)
	if !refused(code) || bytes.Contains(body, []byte("ssh-ed25519")) {
		t.Errorf("boot config with the previous generation's token: %d %s", code, body)
	}
	if got := r.node(macB); got.Phase != afterReinstall.Phase || got.InstallGeneration != afterReinstall.InstallGeneration || got.Target != api.TargetInstall {
		t.Errorf("the old token moved the node: %+v, want as after the reinstall %+v", got, afterReinstall)
	}

	// The new generation's config carries a new token, which works.
	r.srv.refusals = newLimiter(refusalEvery, globalRefusals) // a fresh budget for 127.0.0.2
	fresh := r.installToken(macB, "127.0.0.2")
	if fresh == old || len(fresh) < 32 {
		t.Fatalf("the token was not rotated: %q then %q", old, fresh)
	}
	if code := r.callbackWith(clientFrom("127.0.0.2"), macB, api.KindInstalled, "", fresh); code != 204 {
		t.Errorf("installed with the new token: %d", code)
	}
	if got := r.node(macB); got.Phase != api.PhaseInstalled || got.Target != api.TargetDisk {
		t.Errorf("after installed with the new token: %+v", got)
	}
}
