package mgmtnode

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A signed installer image's archive holds the image and its cosign
// signature (ref name sha256-HEX.sig): the image is the one run, and an
// archive with two images besides the signature is refused.
func TestArchiveImageSkipsTheSignature(t *testing.T) {
	write := func(index string) string {
		p := filepath.Join(t.TempDir(), "racker.oci.tar")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		tw.WriteHeader(&tar.Header{Name: "oci-layout", Mode: 0o644, Size: 2})
		tw.Write([]byte("{}"))
		tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o644, Size: int64(len(index))})
		tw.Write([]byte(index))
		tw.Close()
		f.Close()
		return p
	}
	signed := write(`{"schemaVersion":2,"manifests":[
		{"digest":"sha256:aaaa","annotations":{"org.opencontainers.image.ref.name":"1.2.0"}},
		{"digest":"sha256:bbbb","annotations":{"org.opencontainers.image.ref.name":"sha256-aaaa.sig"}}]}`)
	m, err := archiveImage(signed)
	if err != nil || m.Digest != "sha256:aaaa" || m.refName() != "1.2.0" {
		t.Errorf("signed archive: %+v %v, want the image sha256:aaaa tagged 1.2.0", m, err)
	}
	if d, err := ArchiveDigest(signed); err != nil || d != "sha256:aaaa" {
		t.Errorf("ArchiveDigest of a signed archive: %q %v", d, err)
	}
	unsigned := write(`{"schemaVersion":2,"manifests":[{"digest":"sha256:cccc"}]}`)
	if m, err := archiveImage(unsigned); err != nil || m.Digest != "sha256:cccc" || m.refName() != "" {
		t.Errorf("unsigned archive without a ref name: %+v %v", m, err)
	}
	two := write(`{"schemaVersion":2,"manifests":[{"digest":"sha256:aaaa"},{"digest":"sha256:dddd"}]}`)
	if _, err := archiveImage(two); err == nil || !strings.Contains(err.Error(), "found 2") {
		t.Errorf("an archive of two images: %v, want a refusal", err)
	}
}
