package release

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Manifest is the payload declaration (release/conf.yaml): which modules the
// image holds, where their files come from and how they are built. Keeping it
// as data means adding a tool to the payload is a manifest change, and the
// build checks every downloaded byte against a pinned checksum.
type Manifest struct {
	// Name of the image repository's last path element, for humans.
	Name string `yaml:"name"`
	// Registry is the default HOST[:PORT]/REPO recorded in each release, so
	// an installed Racker knows where to look for updates.
	Registry string `yaml:"registry"`
	// WorkDir is where build steps run and local asset paths start,
	// relative to the manifest's folder (the repository root).
	WorkDir string `yaml:"workdir"`
	// StateVersion is the state layout this release reads and writes.
	StateVersion int `yaml:"state_version"`
	// Changelog is the project's CHANGELOG.md (relative to workdir): the
	// release's section becomes an image label and the whole file goes
	// into the payload, so `racker update` can show what changes.
	Changelog string   `yaml:"changelog"`
	Modules   []Module `yaml:"modules"`

	dir string // folder of the manifest file
}

// Module is one layer of the image: a named group of payload files.
type Module struct {
	Name string `yaml:"name"`
	// Optional modules are left out unless the build enables them.
	Optional bool        `yaml:"optional"`
	Assets   []Asset     `yaml:"assets"`
	Build    []BuildStep `yaml:"build"`
}

// Asset is one file of a module: a local path or a URL pinned by SHA-256.
type Asset struct {
	Path   string `yaml:"path"`
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
	// Extract names the member to take out of a .zip or .tar.gz download.
	Extract string `yaml:"extract"`
	// Dest is the file's path inside the payload, e.g. bin/kubectl.
	Dest string `yaml:"dest"`
	// Mode is octal, e.g. "0755"; default 0644.
	Mode string `yaml:"mode"`
	// License (an SPDX expression) and Source (where its source code is
	// published) describe a third-party file; docs/licenses.md lists them
	// and its generator refuses an asset from outside the repository
	// without a License.
	License string `yaml:"license"`
	Source  string `yaml:"source"`
}

// BuildStep is a build command; ${VERSION}, ${PAYLOAD} (this module's payload
// folder) and ${WORKDIR} are replaced in its arguments and environment.
type BuildStep struct {
	Run []string          `yaml:"run"`
	Env map[string]string `yaml:"env"`
}

var (
	moduleName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	sha256Hex  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// LoadManifest reads and checks a manifest file.
func LoadManifest(file string) (*Manifest, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the release manifest: %w", err)
	}
	var m Manifest
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("reading the release manifest %s: %w", file, err)
	}
	m.dir = filepath.Dir(file)
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("release manifest %s: %w", file, err)
	}
	return &m, nil
}

// workDir is the absolute folder build steps and local paths start from.
func (m *Manifest) workDir() string {
	wd := m.WorkDir
	if wd == "" {
		wd = "."
	}
	if filepath.IsAbs(wd) {
		return wd
	}
	return filepath.Join(m.dir, wd)
}

func (m *Manifest) check() error {
	if m.StateVersion < 1 {
		return fmt.Errorf("state_version must be 1 or more")
	}
	if len(m.Modules) == 0 {
		return fmt.Errorf("no modules")
	}
	seen := map[string]bool{}
	for _, mod := range m.Modules {
		if !moduleName.MatchString(mod.Name) {
			return fmt.Errorf("module name %q: want lower-case letters, digits, dashes", mod.Name)
		}
		if seen[mod.Name] {
			return fmt.Errorf("module %s: declared twice", mod.Name)
		}
		seen[mod.Name] = true
		if len(mod.Assets) == 0 && len(mod.Build) == 0 {
			return fmt.Errorf("module %s: neither assets nor build steps", mod.Name)
		}
		for i, a := range mod.Assets {
			if err := a.check(); err != nil {
				return fmt.Errorf("module %s, asset %d: %w", mod.Name, i+1, err)
			}
		}
		for i, s := range mod.Build {
			if len(s.Run) == 0 {
				return fmt.Errorf("module %s, build step %d: empty run", mod.Name, i+1)
			}
		}
	}
	return nil
}

func (a Asset) check() error {
	if (a.Path == "") == (a.URL == "") {
		return fmt.Errorf("want exactly one of path and url")
	}
	if a.URL != "" && a.SHA256 != "" && !sha256Hex.MatchString(a.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", a.SHA256)
	}
	if _, err := a.mode(); err != nil {
		return err
	}
	return checkPayloadPath(a.Dest)
}

func (a Asset) mode() (os.FileMode, error) {
	if a.Mode == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(a.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("mode %q: want octal permissions like 0755", a.Mode)
	}
	return os.FileMode(m), nil
}

// checkPayloadPath accepts only clean relative paths, so nothing in a
// manifest or an image can write outside its folder.
func checkPayloadPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("payload path %q: want a clean relative path", p)
	}
	return nil
}

// modules returns the modules a build includes: all required ones plus the
// optional ones named in enable (an unknown name is an error).
func (m *Manifest) modules(enable []string) ([]Module, error) {
	want := map[string]bool{}
	for _, e := range enable {
		want[e] = true
	}
	var out []Module
	for _, mod := range m.Modules {
		if !mod.Optional || want[mod.Name] {
			out = append(out, mod)
		}
		delete(want, mod.Name)
	}
	for name := range want {
		return nil, fmt.Errorf("optional module %q is not in the manifest", name)
	}
	return out, nil
}
