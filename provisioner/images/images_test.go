package images

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// A locally generated key stands in for Flatcar's: the download and verify
// path is the real one, the release server is an httptest server on loopback.
func newKey(t *testing.T, cfg *packet.Config) (*openpgp.Entity, string) {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{}
	}
	cfg.Algorithm = packet.PubKeyAlgoEdDSA
	e, err := openpgp.NewEntity("Test Release Signer", "", "signer@example.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	path := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(path, buf.Bytes(), 0o644)
	return e, path
}

func sign(t *testing.T, e *openpgp.Entity, data []byte, cfg *packet.Config) []byte {
	t.Helper()
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, e, bytes.NewReader(data), cfg); err != nil {
		t.Fatal(err)
	}
	return sig.Bytes()
}

// releaseServer serves files by path and counts requests per path.
type releaseServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

func newReleaseServer(t *testing.T, signer *openpgp.Entity, version string) *releaseServer {
	rs := &releaseServer{files: map[string][]byte{}, hits: map[string]int{}}
	add := func(name string, data []byte) {
		rs.files[name] = data
		rs.files[name+".sig"] = sign(t, signer, data, nil)
	}
	add("current/version.txt", []byte("FLATCAR_BUILD=1\nFLATCAR_VERSION="+version+"\nFLATCAR_VERSION_ID="+version+"\n"))
	for _, f := range []string{Kernel, Initrd, Image} {
		add(version+"/"+f, []byte(strings.Repeat(f, 1000)))
	}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		p := strings.TrimPrefix(r.URL.Path, "/amd64-usr/")
		rs.hits[p]++
		b, ok := rs.files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *releaseServer) set(name string, data []byte) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if data == nil {
		delete(rs.files, name)
	} else {
		rs.files[name] = data
	}
}

func (rs *releaseServer) hit(name string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.hits[name]
}

func flatcarSpec(rs *releaseServer, keyFile, cache string) Spec {
	return Spec{OS: "flatcar", BaseURL: rs.URL + "/amd64-usr", KeyFile: keyFile, CacheDir: cache}
}

func TestFlatcarDownloadVerifyAndCache(t *testing.T) {
	signer, keyFile := newKey(t, nil)
	rs := newReleaseServer(t, signer, "4152.2.3")
	cache := filepath.Join(t.TempDir(), "state", "images") // not there yet, as on a first start
	rel, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache))
	if err != nil {
		t.Fatal(err)
	}
	if rel.OS != "flatcar" || rel.Version != "4152.2.3" || rel.Dir != filepath.Join(cache, "flatcar", "4152.2.3") {
		t.Fatalf("release %+v", rel)
	}
	f, err := rel.Open(Image)
	if err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	got.ReadFrom(f)
	f.Close()
	if !bytes.Equal(got.Bytes(), rs.files["4152.2.3/"+Image]) {
		t.Error("cached image differs from the served one")
	}
	if _, err := rel.Open(Image + ".sig"); err != nil {
		t.Errorf("the image signature must be served for flatcar-install: %v", err)
	}
	// The nodes get the key the release was verified with (flatcar-install -k).
	if k, err := ReadKeyring(bytes.NewReader(rel.SigningKey), "served"); err != nil || k.Fingerprints()[0] != fmt.Sprintf("%X", signer.PrimaryKey.Fingerprint) {
		t.Errorf("served signing key: %v", err)
	}
	// A mirror's own key is not Flatcar's: installers without -k would
	// refuse its images, and the release says so.
	if want := fmt.Sprintf("%X", signer.PrimaryKey.Fingerprint); rel.OtherKey != want {
		t.Errorf("the release's other key: %q, want %s", rel.OtherKey, want)
	}
	if otherKey(mustShippedKey(t), []string{FlatcarKeyFingerprint}) != "" {
		t.Error("Flatcar's own key reported as another")
	}
	if _, err := rel.Open("../../etc/passwd"); err == nil {
		t.Error("Open served a name outside the release")
	}

	// Second start: the server no longer has the image; the cache is used,
	// and "current" is still asked for.
	rs.set("4152.2.3/"+Image, nil)
	if _, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache)); err != nil {
		t.Fatalf("cached release not reused: %v", err)
	}
	if n := rs.hit("4152.2.3/" + Image); n != 1 {
		t.Errorf("image downloaded %d times, want once", n)
	}
	// Offline: "current" falls back on the version it named last time.
	rs.set("current/version.txt", nil)
	if rel, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache)); err != nil || rel.Version != "4152.2.3" {
		t.Errorf("offline start: %+v %v", rel, err)
	}
}

func TestFlatcarRefusesBadSignatures(t *testing.T) {
	signer, keyFile := newKey(t, nil)
	other, _ := newKey(t, nil)
	for _, tc := range []struct {
		name  string
		spoil func(rs *releaseServer)
		want  string
	}{
		{"tampered", func(rs *releaseServer) {
			b := bytes.Clone(rs.files["4152.2.3/"+Initrd])
			b[10] ^= 1
			rs.set("4152.2.3/"+Initrd, b)
		}, Initrd},
		{"missing signature", func(rs *releaseServer) { rs.set("4152.2.3/"+Kernel+".sig", nil) }, Kernel + ".sig"},
		{"signed by another key", func(rs *releaseServer) {
			rs.set("4152.2.3/"+Image+".sig", sign(t, other, rs.files["4152.2.3/"+Image], nil))
		}, Image},
		{"tampered version file", func(rs *releaseServer) {
			rs.set("current/version.txt", []byte("FLATCAR_VERSION=1.0.0\n"))
		}, "version.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newReleaseServer(t, signer, "4152.2.3")
			tc.spoil(rs)
			cache := t.TempDir()
			rel, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache))
			if err == nil {
				t.Fatalf("accepted: %+v", rel)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			// Nothing unverified is left where it could be served.
			filepath.Walk(cache, func(p string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() && strings.Contains(p, tc.want) && !strings.HasSuffix(p, ".sig") {
					t.Errorf("unverified file left in the cache: %s", p)
				}
				return nil
			})
		})
	}
}

// A cached file whose bytes changed on disk is downloaded again.
func TestFlatcarCacheTamperedOnDisk(t *testing.T) {
	signer, keyFile := newKey(t, nil)
	rs := newReleaseServer(t, signer, "4152.2.3")
	cache := t.TempDir()
	rel, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rel.Dir, Kernel), []byte("evil"), 0o644)
	if _, err := Prepare(context.Background(), flatcarSpec(rs, keyFile, cache)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(rel.Dir, Kernel))
	if string(b) == "evil" || rs.hit("4152.2.3/"+Kernel) != 2 {
		t.Errorf("tampered cache file kept (downloads: %d)", rs.hit("4152.2.3/"+Kernel))
	}
}

// A signature made while the signing subkey was valid stays good after the
// key expired, as Flatcar rotates its signing subkeys every year.
func TestSignatureByNowExpiredKey(t *testing.T) {
	past := time.Now().Add(-48 * time.Hour)
	signer, keyFile := newKey(t, &packet.Config{Time: func() time.Time { return past }, KeyLifetimeSecs: 3600})
	dir := t.TempDir()
	data := []byte("release file")
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "f.sig"), sign(t, signer, data, &packet.Config{Time: func() time.Time { return past.Add(time.Minute) }}), 0o644)
	k, err := ReadKeyringFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyFile(filepath.Join(dir, "f"), filepath.Join(dir, "f.sig")); err != nil {
		t.Errorf("old signature refused: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("release filE"), 0o644)
	if err := k.VerifyFile(filepath.Join(dir, "f"), filepath.Join(dir, "f.sig")); err == nil {
		t.Error("tampered file accepted through the expiry fallback")
	}
}

func TestArmoredSignature(t *testing.T) {
	signer, keyFile := newKey(t, nil)
	dir := t.TempDir()
	data := []byte("payload")
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	var sig bytes.Buffer
	openpgp.ArmoredDetachSign(&sig, signer, bytes.NewReader(data), nil)
	os.WriteFile(filepath.Join(dir, "f.asc"), sig.Bytes(), 0o644)
	k, _ := ReadKeyringFile(keyFile)
	if err := k.VerifyFile(filepath.Join(dir, "f"), filepath.Join(dir, "f.asc")); err != nil {
		t.Error(err)
	}
}

// A test OS release folder is served like a Flatcar mirror's: its
// version.txt names the version, and the image and version.txt must verify
// with the folder's key (or the one given).
func TestTestOSRelease(t *testing.T) {
	signer, keyFile := newKey(t, nil)
	other, otherKey := newKey(t, nil)
	dir := t.TempDir()
	cur := filepath.Join(dir, "current")
	os.MkdirAll(cur, 0o755)
	write := func(name string, data []byte) { os.WriteFile(filepath.Join(cur, name), data, 0o644) }
	for _, f := range []string{Kernel, Initrd} {
		write(f, []byte("x"))
	}
	key, _ := os.ReadFile(keyFile)
	write(TestOSKeyFile, key)
	version := []byte("FLATCAR_BUILD=0\nFLATCAR_VERSION=testos-abc123\n")
	write(versionFile, version)
	write(versionFile+".sig", sign(t, signer, version, nil))
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir}); err == nil || !strings.Contains(err.Error(), Image) {
		t.Errorf("missing image: %v", err)
	}
	image := []byte("the disk image")
	write(Image, image)
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir}); err == nil || !strings.Contains(err.Error(), Image+".sig") {
		t.Errorf("an unsigned image: %v", err)
	}
	write(Image+".sig", sign(t, other, image, nil))
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir}); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("an image signed by another key: %v", err)
	}
	write(Image+".sig", sign(t, signer, image, nil))
	rel, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir})
	if err != nil || rel.Version != "testos-abc123" || rel.Dir != cur || len(rel.Files) != 7 {
		t.Fatalf("testos: %+v %v", rel, err)
	}
	for _, f := range []string{Image + ".sig", versionFile, TestOSKeyFile} {
		if fh, err := rel.Open(f); err != nil {
			t.Errorf("%s is not served: %v", f, err)
		} else {
			fh.Close()
		}
	}
	// The key nodes get is the folder's, and it verifies the image.
	k, err := ReadKeyring(bytes.NewReader(rel.SigningKey), "served key")
	if err != nil || k.VerifyFile(filepath.Join(cur, Image), filepath.Join(cur, Image+".sig")) != nil {
		t.Errorf("the served key does not verify the image: %v", err)
	}
	// --image-key names another key: the release must be signed by it.
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir, KeyFile: otherKey}); err == nil {
		t.Error("a release not signed by --image-key was accepted")
	}
	// The folder's own key is what the test OS's installer has built in:
	// named by --image-key it is still its own; a mirror that re-signs
	// with another key is told apart (Lokomotive's installs would refuse).
	if rel.OtherKey != "" {
		t.Errorf("the folder's own key reported as another: %q", rel.OtherKey)
	}
	if own, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir, KeyFile: keyFile}); err != nil || own.OtherKey != "" {
		t.Errorf("--image-key naming the folder's own key: %v, %+v", err, own)
	}
	write(Image+".sig", sign(t, other, image, nil))
	write(versionFile+".sig", sign(t, other, version, nil))
	resigned, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir, KeyFile: otherKey})
	if ok, _ := ReadKeyringFile(otherKey); err != nil || resigned.OtherKey == "" || resigned.OtherKey != strings.Join(ok.Fingerprints(), ",") {
		t.Errorf("a release re-signed with --image-key: %v, %+v", err, resigned)
	}
	write(Image+".sig", sign(t, signer, image, nil))
	write(versionFile+".sig", sign(t, signer, version, nil))
	write(versionFile, []byte("FLATCAR_VERSION=../x\n"))
	write(versionFile+".sig", sign(t, signer, []byte("FLATCAR_VERSION=../x\n"), nil))
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir}); err == nil {
		t.Error("a version with a path in it was accepted")
	}
	if _, err := Prepare(context.Background(), Spec{OS: "windows"}); err == nil {
		t.Error("unknown OS accepted")
	}
	if _, err := Prepare(context.Background(), Spec{OS: "testos", Dir: dir, Version: "../x"}); err == nil {
		t.Error("path in version accepted")
	}
}

// The shipped Flatcar key is the published one (its fingerprint), and it
// is the default when no key file is given.
func TestShippedFlatcarKey(t *testing.T) {
	k, err := shippedFlatcarKey()
	if err != nil {
		t.Fatal(err)
	}
	if fps := k.Fingerprints(); len(fps) != 1 || fps[0] != FlatcarKeyFingerprint {
		t.Errorf("fingerprints %v", fps)
	}
	if len(k.entities[0].Subkeys) < 2 {
		t.Errorf("the shipped key lost its signing subkeys")
	}
	// A file signed by a local key must not verify with Flatcar's key.
	signer, _ := newKey(t, nil)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "f.sig"), sign(t, signer, []byte("x"), nil), 0o644)
	if err := k.VerifyFile(filepath.Join(dir, "f"), filepath.Join(dir, "f.sig")); err == nil {
		t.Error("a foreign signature verified with the Flatcar key")
	}
}

func mustShippedKey(t *testing.T) *Keyring {
	t.Helper()
	k, err := shippedFlatcarKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
