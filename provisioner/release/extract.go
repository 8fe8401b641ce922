package release

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FileRecord is one installed file as the image held it.
type FileRecord struct {
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
}

// Files is FilesFile: what a version folder must hold, file by file.
type Files struct {
	Version string `json:"version"`
	Digest  string `json:"digest,omitempty"` // image manifest digest, when known
	// VerifiedBy names the key (KeyID) whose signature over Digest was
	// checked before the install: the install history says what was
	// verified, and with what.
	VerifiedBy string                `json:"verified_by,omitempty"`
	Files      map[string]FileRecord `json:"files"`
}

// ReadFiles reads the record of a version folder.
func ReadFiles(dir string) (*Files, error) {
	data, err := os.ReadFile(filepath.Join(dir, FilesFile))
	if err != nil {
		return nil, fmt.Errorf("reading the file list of %s: %w", dir, err)
	}
	var f Files
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading the file list of %s: %w", dir, err)
	}
	return &f, nil
}

// Verify checks that dir holds exactly the files its record lists, with the
// recorded contents and modes.
func Verify(dir string) (*Files, error) {
	rec, err := ReadFiles(dir)
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil { // current → versions/V
		return nil, err
	}
	seen := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == FilesFile {
			return nil
		}
		want, ok := rec.Files[rel]
		if !ok {
			return fmt.Errorf("%s: not in the release", rel)
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		if st.Mode().Perm() != want.Mode.Perm() {
			return fmt.Errorf("%s: mode %v, the release has %v", rel, st.Mode().Perm(), want.Mode.Perm())
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		if sum != want.SHA256 {
			return fmt.Errorf("%s: content differs from the release", rel)
		}
		seen++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verifying %s: %w", dir, err)
	}
	if seen != len(rec.Files) {
		return nil, fmt.Errorf("verifying %s: %d of %d files present", dir, seen, len(rec.Files))
	}
	return rec, nil
}

// DefaultMaxLayer caps what one layer may unpack to (Installer.MaxLayer):
// the largest module, lokoctl and terraform, is a few hundred MiB.
const DefaultMaxLayer = 2 << 30

// ErrLayerTooBig is wrapped when a layer unpacks to more than the cap.
var ErrLayerTooBig = errors.New("a layer unpacks to more than the cap")

type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: refusing the release", ErrLayerTooBig)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// stager writes a payload into a staging folder, hashing every file.
type stager struct {
	maxLayer   int64
	verifiedBy string
	dir        string
	files      map[string]FileRecord
	hook       func(Step) error
	n          int
}

func (s *stager) add(name string, mode fs.FileMode, r io.Reader) error {
	if err := checkPayloadPath(name); err != nil {
		return err
	}
	if name == FilesFile {
		return fmt.Errorf("%s: reserved name in a payload", name)
	}
	p := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode.Perm())
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.files[name] = FileRecord{SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode.Perm()}
	s.n++
	if s.n == 1 {
		return s.hook(StepExtractMid)
	}
	return nil
}

// finish writes the file record and syncs every folder, so that after the
// rename into versions/ the whole tree is on disk.
func (s *stager) finish(version, digest string) error {
	data, _ := json.MarshalIndent(Files{Version: version, Digest: digest, VerifiedBy: s.verifiedBy, Files: s.files}, "", "  ")
	if err := os.WriteFile(filepath.Join(s.dir, FilesFile), data, 0o644); err != nil {
		return err
	}
	var dirs []string
	filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range append(dirs, filepath.Dir(s.dir)) {
		syncDir(d)
	}
	return nil
}

// fromImage downloads every layer into cache (checking size and digest of
// the whole blob before a byte is unpacked) and unpacks the /racker part.
func (s *stager) fromImage(ctx context.Context, img v1.Image, cache string, progress *progress) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("reading the image manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading the image layers: %w", err)
	}
	if len(layers) != len(m.Layers) || len(layers) != len(cfg.RootFS.DiffIDs) {
		return fmt.Errorf("the image lists %d layers, its config %d", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	var total int64
	for _, d := range m.Layers {
		total += d.Size
	}
	progress.start(total)
	blobs := make([]string, len(layers))
	for i, l := range layers {
		if blobs[i], err = downloadBlob(ctx, l, m.Layers[i], cache, progress); err != nil {
			return err
		}
	}
	progress.done()
	if err := s.hook(StepExtract); err != nil {
		return err
	}
	for i, blob := range blobs {
		if err := s.unpackLayer(blob, cfg.RootFS.DiffIDs[i]); err != nil {
			return fmt.Errorf("unpacking layer %s: %w", m.Layers[i].Digest, err)
		}
	}
	return nil
}

// downloadBlob stores a layer's compressed blob as cache/sha256-HEX, unless
// it is there already (an earlier, interrupted install) with the right digest.
func downloadBlob(ctx context.Context, l v1.Layer, desc v1.Descriptor, cache string, progress *progress) (string, error) {
	final := filepath.Join(cache, desc.Digest.Algorithm+"-"+desc.Digest.Hex)
	if sum, err := fileSHA256(final); err == nil && "sha256:"+sum == desc.Digest.String() {
		progress.add(desc.Size)
		return final, nil
	}
	if desc.Digest.Algorithm != "sha256" {
		return "", fmt.Errorf("layer %s: only sha256 digests are accepted", desc.Digest)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", fmt.Errorf("downloading layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(cache, ".blob-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h, progress), ctxReader{ctx, rc})
	if err != nil {
		tmp.Close()
		return "", fmt.Errorf("downloading layer %s: %w", desc.Digest, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if n != desc.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != desc.Digest.String() {
		return "", fmt.Errorf("downloading layer %s: got %d bytes with digest sha256:%x, want %d bytes: corrupted blob refused", desc.Digest, n, h.Sum(nil), desc.Size)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// unpackLayer unpacks the ImageRoot part of one gzip'ed tar layer and
// checks the uncompressed stream against the config's diff ID.
func (s *stager) unpackLayer(blob string, diffID v1.Hash) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	// A layer may not unpack to more than maxLayer bytes: a few MiB of
	// gzip can hold terabytes of zeros (a "gzip bomb"), and the digest
	// check comes only at the end of the stream.
	capped := &capReader{r: gz, left: s.maxLayer}
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(capped, h))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		rel, ok := strings.CutPrefix(name, ImageRoot+"/")
		if !ok || rel == "" {
			continue // the image root itself, or files outside the payload
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := checkPayloadPath(rel); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(s.dir, filepath.FromSlash(rel)), 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := s.add(rel, fs.FileMode(hdr.Mode).Perm(), tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry type %q is not allowed in a Racker payload", hdr.Name, hdr.Typeflag)
		}
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return err
	}
	if _, err := io.Copy(h, capped); err != nil { // the tar's zero-padding up to the end of the stream
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID.String() {
		return fmt.Errorf("uncompressed content has digest %s, the image config says %s: corrupted layer refused", got, diffID)
	}
	return nil
}

// fromDir copies an unpacked payload (the image's /racker, when running in
// the installer container) into the staging folder.
func (s *stager) fromDir(src string) error {
	if err := s.hook(StepExtract); err != nil {
		return err
	}
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		if rel == FilesFile {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files are allowed in a Racker payload", p)
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return s.add(rel, st.Mode().Perm(), f)
	})
}
