package release

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// WriteOCIArchive writes img as an OCI image layout in a tar file, the
// format `docker load` and `podman load` read; repo (e.g.
// registry.example/racker) names the image they create. The file appears
// whole or not at all.
func WriteOCIArchive(img v1.Image, repo, version, out string) error {
	return WriteSignedOCIArchive(img, nil, repo, version, out)
}

// WriteSignedOCIArchive is WriteOCIArchive with the image's cosign
// signature image beside it (its ref name is the cosign tag), so a first
// install from the archive checks it.
func WriteSignedOCIArchive(img, sig v1.Image, repo, version, out string) error {
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	defer os.RemoveAll(tmpDir)
	lp, err := layout.Write(tmpDir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if repo == "" {
		repo = "racker"
	}
	err = lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
		"io.containerd.image.name":          repo + ":" + version,
	}))
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if sig != nil {
		d, err := img.Digest()
		if err == nil {
			err = lp.AppendImage(sig, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": SignatureTag(d)}))
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
	}
	if err := writeDockerManifest(img, tmpDir, repo+":"+version); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tarFolder(tmpDir, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp.Name(), out)
}

// writeDockerManifest adds the manifest.json that older `docker load`
// versions read (they ignore index.json); it points at the same blobs.
func writeDockerManifest(img v1.Image, dir, tag string) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	entry := map[string]any{"Config": blob(m.Config.Digest), "RepoTags": []string{tag}}
	var layers []string
	for _, l := range m.Layers {
		layers = append(layers, blob(l.Digest))
	}
	entry["Layers"] = layers
	data, err := json.Marshal([]any{entry})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644)
}

func tarFolder(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(st, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = filepath.ToSlash(rel), 0, 0, "", ""
		hdr.ModTime = time.Unix(0, 0).UTC()
		hdr.Mode = 0o644
		if d.IsDir() {
			hdr.Name, hdr.Mode = hdr.Name+"/", 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// OpenOCIArchive reads an image written by WriteOCIArchive (or `podman save
// --format oci-archive`). It unpacks into a temporary folder that close
// removes; blobs are checked against their digests when read.
func OpenOCIArchive(file string) (img v1.Image, closeFn func(), err error) {
	img, _, closeFn, err = OpenSignedOCIArchive(file)
	return img, closeFn, err
}

// OpenSignedOCIArchive is OpenOCIArchive that also returns the image's
// signature image when the archive holds one (nil when it does not).
func OpenSignedOCIArchive(file string) (img, sig v1.Image, closeFn func(), err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening the image archive: %w", err)
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "racker-oci-*")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening the image archive %s: %w", file, err)
	}
	closeFn = func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			closeFn()
		}
	}()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		if err := checkPayloadPath(name); err != nil {
			return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFileFrom(p, tr, 0o644)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
	}
	var main, sigs []v1.Descriptor
	for _, m := range im.Manifests {
		if strings.HasSuffix(m.Annotations["org.opencontainers.image.ref.name"], ".sig") {
			sigs = append(sigs, m)
		} else {
			main = append(main, m)
		}
	}
	if len(main) != 1 || len(sigs) > 1 {
		return nil, nil, nil, fmt.Errorf("the image archive %s holds %d images and %d signatures; want one and at most one", file, len(main), len(sigs))
	}
	if img, err = idx.Image(main[0].Digest); err != nil {
		return nil, nil, nil, fmt.Errorf("reading the image archive %s: %w", file, err)
	}
	if len(sigs) == 1 {
		if sig, err = idx.Image(sigs[0].Digest); err != nil {
			return nil, nil, nil, fmt.Errorf("reading the signature in the image archive %s: %w", file, err)
		}
	}
	return img, sig, closeFn, nil
}

func writeFileFrom(p string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
