package release

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// BuildOptions say what to build; Build turns them into an image.
type BuildOptions struct {
	Manifest *Manifest
	Version  string
	// Registry overrides the manifest's default registry in the release info.
	Registry string
	// Changelog overrides the manifest's changelog file (a path as given).
	Changelog string
	// SigningKey is the public key (PEM) the release ships as KeyFile: the
	// key its successors must be signed with once it is installed.
	SigningKey []byte
	// Enable names optional modules to include.
	Enable []string
	// CacheDir keeps downloaded assets by checksum, so each is fetched once.
	CacheDir string
	// HTTPClient fetches URL assets (default http.DefaultClient).
	HTTPClient *http.Client
	// Output receives the build steps' output (default: discarded).
	Output io.Writer
	Logger *slog.Logger
}

// stagedModule is one module's files, laid out as they will be installed.
type stagedModule struct {
	name string
	dir  string
}

// stagePayload builds every included module into its own folder under work,
// then writes the release info (and changelog), and returns the modules in
// layer order and the release's section of the changelog ("" without one).
func stagePayload(ctx context.Context, o BuildOptions, work string) ([]stagedModule, *Info, string, error) {
	// The changelog first: a release without its section fails before the
	// modules are built.
	log, section, err := o.changelog(o.Version)
	if err != nil {
		return nil, nil, "", err
	}
	staged, info, err := stageModules(ctx, o, work)
	if err != nil {
		return nil, nil, "", err
	}
	rel, err := writeReleaseLayer(work, o.Version, info, log, o.SigningKey)
	if err != nil {
		return nil, nil, "", err
	}
	return append(staged, rel), info, section, nil
}

// stageModules builds the manifest's modules and the release info.
func stageModules(ctx context.Context, o BuildOptions, work string) ([]stagedModule, *Info, error) {
	mods, err := o.Manifest.modules(o.Enable)
	if err != nil {
		return nil, nil, err
	}
	var staged []stagedModule
	owner := map[string]string{} // payload path → module, to refuse clashes
	info := &Info{Version: o.Version, Registry: o.Manifest.Registry, StateVersion: o.Manifest.StateVersion}
	if o.Registry != "" {
		info.Registry = o.Registry
	}
	for _, mod := range mods {
		dir := filepath.Join(work, "modules", mod.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("building module %s: %w", mod.Name, err)
		}
		for _, a := range mod.Assets {
			if err := o.placeAsset(ctx, a, dir); err != nil {
				return nil, nil, fmt.Errorf("building module %s: %w", mod.Name, err)
			}
		}
		for i, s := range mod.Build {
			if err := o.runStep(ctx, s, dir); err != nil {
				return nil, nil, fmt.Errorf("building module %s, step %d (%s): %w", mod.Name, i+1, strings.Join(s.Run, " "), err)
			}
		}
		if err := claimFiles(dir, mod.Name, owner); err != nil {
			return nil, nil, err
		}
		staged = append(staged, stagedModule{name: mod.Name, dir: dir})
		info.Modules = append(info.Modules, mod.Name)
	}
	if _, ok := owner["bin/racker"]; !ok {
		return nil, nil, errors.New("the payload has no bin/racker: the image could not install itself")
	}
	info.MigratesFrom = migratesFrom(owner, info.StateVersion)
	if err := info.Validate(); err != nil {
		return nil, nil, err
	}
	return staged, info, nil
}

// writeReleaseLayer stages the release layer, which comes last: it names
// the version, so the module layers above it stay identical (and cached)
// across versions. It holds the release info and, when there is one, the
// changelog.
func writeReleaseLayer(work, version string, info *Info, changelog, key []byte) (stagedModule, error) {
	relDir := filepath.Join(work, "modules", ".release")
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		return stagedModule{}, fmt.Errorf("writing the release info: %w", err)
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	files := map[string][]byte{InfoFile: append(data, '\n'), VersionFile: []byte(version + "\n")}
	if changelog != nil {
		files[ChangelogFile] = changelog
	}
	if key != nil {
		files[KeyFile] = key
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(relDir, name), data, 0o644); err != nil {
			return stagedModule{}, fmt.Errorf("writing the release info: %w", err)
		}
	}
	return stagedModule{name: "release", dir: relDir}, nil
}

// claimFiles records which module owns each payload file; two modules
// writing the same path is a manifest error, not a silent overwrite.
func claimFiles(dir, module string, owner map[string]string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == InfoFile || rel == VersionFile || rel == FilesFile || rel == ChangelogFile || rel == KeyFile {
			return fmt.Errorf("module %s: %s is written by the build itself", module, rel)
		}
		if prev, ok := owner[rel]; ok {
			return fmt.Errorf("modules %s and %s both provide %s", prev, module, rel)
		}
		owner[rel] = module
		return nil
	})
}

// migratesFrom is the oldest state version from which the payload's
// migrations (migrations/N.sh: N-1 → N) reach target without a gap.
func migratesFrom(files map[string]string, target int) int {
	from := target
	for from > 1 {
		if _, ok := files[path.Join(MigrationsDir, strconv.Itoa(from)+".sh")]; !ok {
			break
		}
		from--
	}
	return from
}

func (o BuildOptions) expand(s, payload string) string {
	r := strings.NewReplacer("${VERSION}", o.Version, "${PAYLOAD}", payload, "${WORKDIR}", o.Manifest.workDir())
	return r.Replace(s)
}

func (o BuildOptions) runStep(ctx context.Context, s BuildStep, payload string) error {
	args := make([]string, len(s.Run))
	for i, a := range s.Run {
		args[i] = o.expand(a, payload)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = o.Manifest.workDir()
	cmd.Env = os.Environ()
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+o.expand(v, payload))
	}
	out := o.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

// placeAsset copies one asset into the module folder, downloading and
// checking it first when it is a URL.
func (o BuildOptions) placeAsset(ctx context.Context, a Asset, dir string) error {
	mode, _ := a.mode()
	src := a.Path
	if a.URL != "" {
		var err error
		if src, err = o.fetchAsset(ctx, a); err != nil {
			return err
		}
	} else if !filepath.IsAbs(src) {
		src = filepath.Join(o.Manifest.workDir(), src)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("asset %s: %w (the manifest names it; is the file built or installed? `make deps` installs the iPXE files)", a.Dest, err)
	}
	defer in.Close()
	var r io.Reader = in
	if a.Extract != "" {
		if r, err = extractMember(in, a.Extract); err != nil {
			return fmt.Errorf("asset %s from %s: %w", a.Dest, a.URL+a.Path, err)
		}
	}
	dst := filepath.Join(dir, filepath.FromSlash(a.Dest))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	return out.Close()
}

// fetchAsset returns the cached file for a URL asset, downloading it once.
// The checksum is the cache key, so a changed pin never reuses old bytes.
func (o BuildOptions) fetchAsset(ctx context.Context, a Asset) (string, error) {
	if a.SHA256 == "" {
		return "", fmt.Errorf("asset %s: %s has no sha256 pinned in the manifest; refusing an unchecked download", a.Dest, a.URL)
	}
	if o.CacheDir == "" {
		return "", fmt.Errorf("asset %s: no cache folder for downloads", a.Dest)
	}
	cached := filepath.Join(o.CacheDir, "sha256-"+a.SHA256)
	if sum, err := fileSHA256(cached); err == nil && sum == a.SHA256 {
		return cached, nil
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	client := o.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return "", fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asset %s: downloading %s: %w", a.Dest, a.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("asset %s: downloading %s: %s", a.Dest, a.URL, resp.Status)
	}
	tmp, err := os.CreateTemp(o.CacheDir, ".download-*")
	if err != nil {
		return "", fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), resp.Body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("asset %s: downloading %s: %w", a.Dest, a.URL, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return "", fmt.Errorf("asset %s: %s has sha256 %s, the manifest pins %s: checksum mismatch, build stopped", a.Dest, a.URL, got, a.SHA256)
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return "", fmt.Errorf("asset %s: %w", a.Dest, err)
	}
	if o.Logger != nil {
		o.Logger.Info("downloaded asset", "url", a.URL, "sha256", a.SHA256)
	}
	return cached, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// extractMember returns the named member of a zip or gzip'ed tar archive.
func extractMember(f *os.File, member string) (io.Reader, error) {
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	switch {
	case string(magic[:]) == "PK\x03\x04":
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return nil, fmt.Errorf("reading the zip: %w", err)
		}
		for _, zf := range zr.File {
			if zf.Name == member {
				return zf.Open()
			}
		}
	case magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("reading the tar.gz: %w", err)
		}
		tr := tar.NewReader(gz)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading the tar.gz: %w", err)
			}
			if strings.TrimPrefix(hdr.Name, "./") == member && hdr.Typeflag == tar.TypeReg {
				return tr, nil
			}
		}
	default:
		return nil, errors.New("extract: not a zip or tar.gz archive")
	}
	return nil, fmt.Errorf("extract: no member %q in the archive", member)
}
