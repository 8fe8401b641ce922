package release

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Layout is where Racker lives on a host. Every path is absolute on the
// host; Root prefixes them all (a test folder, or /proc/1/root when the
// installer runs in a container with --pid host).
type Layout struct {
	Root       string
	InstallDir string // /opt/racker
	BinDir     string // /opt/bin
	StateDir   string // /opt/racker-state
	UnitDir    string // /etc/systemd/system
}

// DefaultLayout fills the host paths that have no flag of their own.
func DefaultLayout(root, installDir, stateDir string) Layout {
	if root == "" {
		root = "/"
	}
	return Layout{Root: root, InstallDir: installDir, BinDir: "/opt/bin", StateDir: stateDir, UnitDir: "/etc/systemd/system"}
}

func (l Layout) at(p string) string { return filepath.Join(l.Root, p) }

func (l Layout) versions() string { return l.at(filepath.Join(l.InstallDir, "versions")) }

// CurrentLink and PreviousLink are the symlinks naming the installed versions.
func (l Layout) CurrentLink() string  { return l.at(filepath.Join(l.InstallDir, "current")) }
func (l Layout) PreviousLink() string { return l.at(filepath.Join(l.InstallDir, "previous")) }

// VersionDir is the folder of one installed version.
func (l Layout) VersionDir(v string) string { return filepath.Join(l.versions(), v) }

// Step names the points of an install where a crash is survivable; tests
// inject a failure or a kill at each.
type Step string

const (
	StepDownload   Step = "download"
	StepExtract    Step = "extract"
	StepExtractMid Step = "extract-mid"
	StepStaged     Step = "staged"
	StepMigrate    Step = "migrate"
	StepSwitch     Step = "switch"
	StepLink       Step = "link"
	StepUnits      Step = "units"
)

// Installer puts releases onto a host and switches between them.
type Installer struct {
	Layout Layout
	// Services restarts the systemd units; nil means the host has none to
	// touch (a --root test tree).
	Services Services
	Logger   *slog.Logger
	// Progress receives a download meter (a terminal), or nil.
	Progress io.Writer
	// Keep is how many installed versions to keep (default 3: current,
	// previous and one more).
	Keep int
	// HostChroot runs state migrations chrooted into Layout.Root: the
	// installer container has no shell, the host has.
	HostChroot bool
	// MaxLayer caps what one image layer may unpack to (default
	// DefaultMaxLayer).
	MaxLayer int64

	hook func(Step) error
}

// Source is a release to install: an image (from a registry or an archive)
// or an unpacked payload folder (the installer image's own /racker).
type Source struct {
	Image  v1.Image
	Digest string // of Image, when known
	Dir    string
	// VerifiedBy names the key whose signature over Digest was checked
	// (KeyID), recorded with the version (Files.VerifiedBy).
	VerifiedBy string
}

// Options say which state changes an install may make.
type Options struct {
	// Migrate allows running the release's state migrations (upgrade, get,
	// install); update and rollback never change the state layout.
	Migrate bool
}

// Result says what an install or rollback did.
type Result struct {
	From, To  string
	Changed   bool
	Started   []string // units enabled and started (first install)
	Restarted []string
	Notes     []string
}

func (in *Installer) log() *slog.Logger {
	if in.Logger != nil {
		return in.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (in *Installer) step(s Step) error {
	if in.hook == nil {
		return nil
	}
	return in.hook(s)
}

// Install unpacks src into versions/VERSION and makes it current. The old
// version stays current until the new one is whole on disk and its state
// migrations are done; then one rename switches.
func (in *Installer) Install(ctx context.Context, src Source, opts Options) (*Result, error) {
	unlock, err := in.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var info *Info
	if src.Image != nil {
		info, err = ImageInfo(src.Image)
	} else {
		info, err = ReadInfo(src.Dir)
	}
	if err != nil {
		return nil, err
	}
	res := &Result{To: info.Version}
	if cur, err := in.Current(); err == nil {
		res.From = cur.Version
	}
	migrations, err := in.planMigrations(info, opts.Migrate)
	if err != nil {
		return nil, err
	}
	if err := in.step(StepDownload); err != nil {
		return nil, err
	}
	dir := in.Layout.VersionDir(info.Version)
	if alreadyUnpacked(src, dir) {
		in.log().Info("version already unpacked and intact", "version", info.Version, "dir", dir)
	} else if err := in.stage(ctx, src, info); err != nil {
		return nil, err
	}
	if err := in.step(StepStaged); err != nil {
		return nil, err
	}
	if err := in.migrate(ctx, dir, migrations); err != nil {
		return nil, err
	}
	if err := in.switchTo(info.Version); err != nil {
		return nil, err
	}
	res.Changed = res.From != res.To
	if err := in.activate(ctx, res); err != nil {
		return res, err
	}
	in.prune()
	return res, nil
}

// alreadyUnpacked says whether dir is an intact copy of src: the same
// image digest, or src is dir itself (the installed racker reinstalling its
// own payload). Anything else is unpacked again, even under the same version.
func alreadyUnpacked(src Source, dir string) bool {
	rec, err := Verify(dir)
	if err != nil {
		return false
	}
	if src.Image != nil {
		return src.Digest != "" && rec.Digest == src.Digest
	}
	a, err1 := filepath.EvalSymlinks(src.Dir)
	b, err2 := filepath.EvalSymlinks(dir)
	return err1 == nil && err2 == nil && a == b
}

// stage unpacks src into a fresh hidden folder and renames it into place;
// an existing folder of the same version is swapped out atomically, so the
// current symlink never points at a half.
func (in *Installer) stage(ctx context.Context, src Source, info *Info) error {
	versions := in.Layout.versions()
	if err := os.MkdirAll(versions, 0o755); err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	staging, err := os.MkdirTemp(versions, "."+info.Version+".partial-")
	if err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	defer os.RemoveAll(staging) // gone after the rename; left only by a crash, pruned later
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	maxLayer := in.MaxLayer
	if maxLayer <= 0 {
		maxLayer = DefaultMaxLayer
	}
	s := &stager{dir: staging, files: map[string]FileRecord{}, hook: in.step, maxLayer: maxLayer, verifiedBy: src.VerifiedBy}
	if src.Image != nil {
		cache := in.Layout.at(filepath.Join(in.Layout.InstallDir, "cache"))
		err = s.fromImage(ctx, src.Image, cache, newProgress(in.Progress))
		if err == nil {
			os.RemoveAll(cache)
		}
	} else {
		err = s.fromDir(src.Dir)
	}
	if err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	got, err := ReadInfo(staging)
	if err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	if got.Version != info.Version {
		return fmt.Errorf("installing %s: the payload says it is %s", info.Version, got.Version)
	}
	if err := s.finish(info.Version, src.Digest); err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	dir := in.Layout.VersionDir(info.Version)
	if _, err := os.Lstat(dir); err == nil {
		if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("installing %s: replacing %s: %w", info.Version, dir, err)
		}
		// staging now holds the old copy; the deferred RemoveAll drops it.
	} else if err := os.Rename(staging, dir); err != nil {
		return fmt.Errorf("installing %s: %w", info.Version, err)
	}
	syncDir(versions)
	in.log().Info("unpacked release", "version", info.Version, "dir", dir, "files", len(s.files))
	return nil
}

// switchTo points previous at the old current and current at version, each
// by writing a new symlink and renaming it over the old one.
func (in *Installer) switchTo(version string) error {
	if err := in.step(StepSwitch); err != nil {
		return err
	}
	target := filepath.Join("versions", version)
	old, err := os.Readlink(in.Layout.CurrentLink())
	if err == nil && old != target {
		if err := replaceSymlink(old, in.Layout.PreviousLink()); err != nil {
			return fmt.Errorf("recording the previous version: %w", err)
		}
	}
	if err := replaceSymlink(target, in.Layout.CurrentLink()); err != nil {
		return fmt.Errorf("switching to %s: %w", version, err)
	}
	in.log().Info("switched current version", "version", version, "previous", strings.TrimPrefix(old, "versions/"))
	return nil
}

// replaceSymlink makes link point at target, atomically.
func replaceSymlink(target, link string) error {
	tmp := link + ".tmp-" + randSuffix()
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(link))
	return nil
}

// Current describes the current version (an error when none is installed).
func (in *Installer) Current() (*Info, error) {
	return ReadInfo(in.Layout.CurrentLink())
}

// Previous describes the version rollback would return to.
func (in *Installer) Previous() (*Info, error) {
	return ReadInfo(in.Layout.PreviousLink())
}

// Rollback makes the previous version current again (and the current one
// previous, so a second rollback undoes the first).
func (in *Installer) Rollback(ctx context.Context) (*Result, error) {
	unlock, err := in.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := in.Current()
	if err != nil {
		return nil, fmt.Errorf("rollback: no current version: %w", err)
	}
	prev, err := in.Previous()
	if err != nil {
		return nil, fmt.Errorf("rollback: no previous version to return to (%w)", err)
	}
	if _, err := Verify(in.Layout.VersionDir(prev.Version)); err != nil {
		return nil, fmt.Errorf("rollback to %s: the installed copy is damaged: %w", prev.Version, err)
	}
	if _, err := in.planMigrations(prev, false); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", prev.Version, err)
	}
	if err := in.switchTo(prev.Version); err != nil {
		return nil, err
	}
	res := &Result{From: cur.Version, To: prev.Version, Changed: true}
	return res, in.activate(ctx, res)
}

// prune removes versions other than current and previous beyond Keep, and
// staging folders left by interrupted installs.
func (in *Installer) prune() {
	keep := in.Keep
	if keep == 0 {
		keep = 3
	}
	// Symlinks a crash left between creation and rename.
	for _, dir := range []string{in.Layout.at(in.Layout.InstallDir), in.Layout.at(in.Layout.BinDir)} {
		if stale, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(stale) > 0 {
			for _, s := range stale {
				os.Remove(s)
			}
		}
	}
	entries, err := os.ReadDir(in.Layout.versions())
	if err != nil {
		return
	}
	protect := map[string]bool{}
	for _, l := range []string{in.Layout.CurrentLink(), in.Layout.PreviousLink()} {
		if t, err := os.Readlink(l); err == nil {
			protect[filepath.Base(t)] = true
		}
	}
	var installed []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
			os.RemoveAll(filepath.Join(in.Layout.versions(), name))
		case !protect[name]:
			installed = append(installed, name)
		}
	}
	vs := SortedVersions(installed)
	for i := 0; i < len(vs)-(keep-len(protect)); i++ {
		dir := in.Layout.VersionDir(vs[i].Original())
		in.log().Info("removing an old version", "dir", dir)
		os.RemoveAll(dir)
	}
}

// lock keeps two installs from interleaving.
func (in *Installer) lock() (func(), error) {
	dir := in.Layout.at(in.Layout.InstallDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: another install is running: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func randSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
