package cli

import (
	"context"
	"crypto/ecdsa"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/racker/racker/provisioner/release"
)

// testKey is the release signing key of the tests (made once per process).
var testKey = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "racker-test-signing-*")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "release-signing.pem")
	_, err = release.GenerateKey(p)
	return p, err
})

func signingKey(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	p, err := testKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := release.ReadSigningKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, k
}

// publish builds a release of m as make image does (its public key in the
// payload, signed with key; key nil publishes it unsigned) and pushes it
// under tag.
func publish(t *testing.T, reg *release.Registry, m *release.Manifest, version, tag string, key *ecdsa.PrivateKey) {
	t.Helper()
	_, k := signingKey(t)
	pub, _ := release.PublicKeyPEM(k)
	img, info, err := release.Build(context.Background(), release.BuildOptions{Manifest: m, Version: version, Registry: reg.String(), SigningKey: pub}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Push(context.Background(), img, tag); err != nil {
		t.Fatal(err)
	}
	if key == nil {
		return
	}
	d, _ := img.Digest()
	sig, err := release.Sign(d, info.Registry, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.PushSignature(context.Background(), sig, d); err != nil {
		t.Fatal(err)
	}
}

// TestOnlySignedCorrectlyLabelledReleasesInstall: get, update and upgrade
// install a release only when its cosign signature is by the trusted key
// (pinned by the installed release; on a first install, the key it ships)
// over its digest, and its version label is the tag asked for. Before,
// TLS to the registry was the only check.
func TestOnlySignedCorrectlyLabelledReleasesInstall(t *testing.T) {
	racker := buildRacker(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/racker"
	reg, err := release.OpenRegistry(ref)
	if err != nil {
		t.Fatal(err)
	}
	_, good := signingKey(t)
	evilPath := filepath.Join(t.TempDir(), "evil.pem")
	if _, err := release.GenerateKey(evilPath); err != nil {
		t.Fatal(err)
	}
	evil, _ := release.ReadSigningKey(evilPath)
	m := releaseManifest(t, racker)
	publish(t, reg, m, "1.0.0", "1.0.0", good)
	publish(t, reg, m, "1.0.1", "1.0.1", nil)  // unsigned
	publish(t, reg, m, "1.0.2", "1.0.2", evil) // signed, by another key
	publish(t, reg, m, "1.0.0", "1.0.3", good) // a good 1.0.0 under the tag 1.0.3
	publish(t, reg, m, "1.0.4", "1.0.4", good)

	fresh := t.TempDir()
	if _, err := runRacker(t, "get", "1.0.1", "--registry", ref, "--root", fresh); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("first install of an unsigned release: %v", err)
	}
	root := t.TempDir()
	if _, err := runRacker(t, "get", "1.0.0", "--registry", ref, "--root", root); err != nil {
		t.Fatal(err)
	}
	files, err := release.ReadFiles(filepath.Join(root, "opt/racker/current"))
	if err != nil || files.VerifiedBy != release.KeyID(&good.PublicKey) || files.Digest == "" {
		t.Fatalf("install history of 1.0.0: %+v %v, want the verified digest and key %s", files, err, release.KeyID(&good.PublicKey))
	}
	for _, tc := range []struct{ tag, why string }{
		{"1.0.1", "not signed"},
		{"1.0.2", "not signed with the trusted key"},
		{"1.0.3", "says it is release 1.0.0"},
	} {
		if _, err := runRacker(t, "get", tc.tag, "--root", root); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("get %s: %v, want it refused (%s)", tc.tag, err, tc.why)
		}
		if v := currentVersion(t, root); v != "1.0.0" {
			t.Fatalf("after get %s: current is %s", tc.tag, v)
		}
	}
	// Another key, given explicitly, is trusted for that install.
	evilPub := strings.TrimSuffix(evilPath, ".pem") + ".pub"
	if _, err := runRacker(t, "get", "1.0.2", "--root", root, "--trust-key", evilPub); err != nil {
		t.Fatalf("get 1.0.2 with --trust-key of its key: %v", err)
	}
	if _, err := runRacker(t, "get", "1.0.4", "--root", root); err != nil {
		t.Fatalf("get 1.0.4 (signed with the pinned key): %v", err)
	}
}
