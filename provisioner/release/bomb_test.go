package release

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestGzipBombLayerIsRefused: a layer of a few hundred KiB of gzip that
// unpacks to 64 MiB is refused once it passes the installer's cap, before
// it fills the disk, and nothing is installed. (Before, a layer had no
// cap: the digest check came only after the whole stream was written.)
func TestGzipBombLayerIsRefused(t *testing.T) {
	img := buildTestImage(t, testRelease{version: "1.0.0"}, "")
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	const size = 64 << 20
	must(t, tw.WriteHeader(&tar.Header{Name: ImageRoot + "/share/bomb", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}))
	_, err := io.Copy(tw, io.LimitReader(zeros{}, size))
	must(t, err)
	must(t, tw.Close())
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb.Bytes())), nil })
	must(t, err)
	compressed, _ := layer.Size()
	img, err = mutate.AppendLayers(img, layer)
	must(t, err)
	root := t.TempDir()
	in := testInstaller(t, root)
	in.MaxLayer = 8 << 20
	d, _ := img.Digest()
	_, err = in.Install(context.Background(), Source{Image: img, Digest: d.String()}, Options{Migrate: true})
	if !errors.Is(err, ErrLayerTooBig) {
		t.Fatalf("installing a release with a %d-byte layer that unpacks to %d: %v, want ErrLayerTooBig", compressed, size, err)
	}
	if _, err := os.Lstat(in.Layout.CurrentLink()); err == nil {
		t.Fatal("a release with a gzip bomb became current")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
