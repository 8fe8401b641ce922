package release

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Build stages the payload declared by o.Manifest in work (a folder the
// caller removes once the image is written) and returns the installer image:
// one layer per module, then a layer with the release info; default command
// `racker install`. No container engine is involved, and the tar streams are
// deterministic (sorted, zero times, root owner), so unchanged modules keep
// their layer digests from one version to the next.
func Build(ctx context.Context, o BuildOptions, work string) (v1.Image, *Info, error) {
	if _, err := ParseVersion(o.Version); err != nil {
		return nil, nil, err
	}
	staged, info, changes, err := stagePayload(ctx, o, work)
	if err != nil {
		return nil, nil, err
	}
	infoJSON, _ := json.Marshal(info)
	labels := map[string]string{
		InfoLabel:                          string(infoJSON),
		"org.opencontainers.image.title":   "racker",
		"org.opencontainers.image.version": info.Version,
	}
	if changes != "" {
		labels[ChangesLabel] = changes
	}
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Config: v1.Config{
			Entrypoint: []string{"/" + ImageRoot + "/bin/racker"},
			Cmd:        []string{"install"},
			Env:        []string{"PATH=/" + ImageRoot + "/bin"},
			Labels:     labels,
		},
		RootFS:  v1.RootFS{Type: "layers"},
		Created: v1.Time{Time: buildTime()},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the image config: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	layersDir := filepath.Join(work, "layers")
	if err := os.MkdirAll(layersDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("building the image: %w", err)
	}
	for _, m := range staged {
		tarPath := filepath.Join(layersDir, m.name+".tar")
		if err := writeLayerTar(m.dir, tarPath); err != nil {
			return nil, nil, fmt.Errorf("building the layer of module %s: %w", m.name, err)
		}
		layer, err := tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
		if err != nil {
			return nil, nil, fmt.Errorf("building the layer of module %s: %w", m.name, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{CreatedBy: "racker release: module " + m.name},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("adding the layer of module %s: %w", m.name, err)
		}
	}
	return img, info, nil
}

// buildTime is SOURCE_DATE_EPOCH when set (reproducible builds), else now;
// it only dates the config, the layers carry no times.
func buildTime() time.Time {
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(s, 0).UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

// writeLayerTar writes dir as a tar stream rooted at ImageRoot/.
func writeLayerTar(dir, out string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files and folders go into the payload", p)
		}
		rel, _ := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0).UTC()
	for _, rel := range names {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		st, err := os.Stat(p)
		if err != nil {
			f.Close()
			return err
		}
		name := path.Join(ImageRoot, rel)
		hdr := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX, Mode: int64(st.Mode().Perm())}
		if st.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Close()
			return err
		}
		if st.IsDir() {
			continue
		}
		in, err := os.Open(p)
		if err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(tw, in)
		in.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ImageInfo reads the release info label of an image's config, so a
// release can be judged (version, state migrations) before its layers are
// downloaded.
func ImageInfo(img v1.Image) (*Info, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	raw, ok := cfg.Config.Labels[InfoLabel]
	if !ok {
		return nil, fmt.Errorf("the image has no %s label: not a Racker release image", InfoLabel)
	}
	var info Info
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		return nil, fmt.Errorf("reading the image's release label: %w", err)
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	return &info, nil
}
