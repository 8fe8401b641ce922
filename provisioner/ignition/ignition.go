// Package ignition builds the Ignition v3 configs Racker serves to a node:
// the install config the live (PXE) system runs, and the boot config the
// installed system applies on its first boot. The layout is the boot
// contract (docs/boot-contract.md §3–4), which the simulator's test OS
// implements independently, so the exact paths, unit names and callbacks
// here are an interface, not a detail.
//
// Configs are built from coreos/ignition's v3_4 types and parsed back with
// the same package before they are returned, so a config Racker serves is
// one Ignition accepts.
package ignition

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"

	"github.com/racker/racker/provisioner/inventory"
)

// Version is the Ignition spec version of every config Racker serves.
const Version = "3.4.0"

// Paths and units of the boot contract.
const (
	InstallScriptPath = "/opt/racker/install.sh"
	BootStubPath      = "/opt/racker/boot.ign"
	// SigningKeyPath holds the OpenPGP public key the release's images are
	// signed with; install.sh passes it to flatcar-install -k.
	SigningKeyPath  = "/opt/racker/image-signing-key.asc"
	InstallUnit     = "racker-install.service"
	BootedUnit      = "racker-booted.service"
	NetworkFilePath = "/etc/systemd/network/00-internal.network"
	LabelsPath      = "/etc/racker/labels"
	HostnamePath    = "/etc/hostname"
	CoreUser        = "core"
)

// InstallParams say how one node installs its OS.
type InstallParams struct {
	MAC string
	// BaseURL is how the node reaches Racker: http://MGMT:PORT.
	BaseURL string
	// OS and Version name the release folder served at
	// BaseURL/assets/OS/VERSION/ (e.g. "flatcar", "3975.2.0").
	OS, Version string
	// Disk is the node type's install disk rule (ParseDiskRule: a /dev
	// path, or ">=SIZE"); empty is Flatcar's rule, the smallest unused disk
	// over 10 GB.
	Disk string
	// WipeAll wipes every other disk first, so an old OS on another disk
	// cannot win the next boot (reprovision).
	WipeAll bool
	// Token is the node's secret for this install generation: install.sh
	// presents it with its callbacks, and the boot stub with its fetch of
	// the boot config (docs/security.md).
	Token string
	// SigningKey is the armored OpenPGP public key the release's images are
	// signed with (images.Release.SigningKey): flatcar-install checks the
	// image against it, as a private mirror re-signs Flatcar's images.
	SigningKey []byte
}

// BootParams describe the installed system of one node.
type BootParams struct {
	MAC      string
	BaseURL  string
	Hostname string
	// Address is the node's static internal address with the subnet's
	// prefix length, e.g. 172.24.213.10/24.
	Address netip.Prefix
	// SSHKeys are authorized_keys lines for the core user.
	SSHKeys []string
	// Labels become key=value lines in /etc/racker/labels, sorted by key.
	Labels map[string]string
	// Snippets are Ignition configs (spec 3.0–3.4) merged over the base
	// config in order (per-type first, then per-node, so the node wins).
	Snippets []Snippet
	// Token is the node's secret for this install generation, presented by
	// the booted callback.
	Token string
}

// Snippet is an operator-supplied Ignition fragment.
type Snippet struct {
	Name string // for error messages: the file it came from
	JSON []byte
}

var (
	safeName  = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	safeURL   = regexp.MustCompile(`^https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._/-]*)?$`)
	safeToken = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	safeHost  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
)

// check rejects anything that would need quoting in the generated shell
// script and unit lines; values come from the plan, but a config is no
// place to discover an injection.
func (p InstallParams) check() (InstallParams, error) {
	mac, err := inventory.NormalizeMAC(p.MAC)
	if err != nil {
		return p, fmt.Errorf("install config: %w", err)
	}
	p.MAC = mac
	p.BaseURL = strings.TrimRight(p.BaseURL, "/")
	switch {
	case !safeURL.MatchString(p.BaseURL):
		return p, fmt.Errorf("install config for %s: base URL %q is not a plain http(s) URL", mac, p.BaseURL)
	case !safeName.MatchString(p.OS) || !safeName.MatchString(p.Version):
		return p, fmt.Errorf("install config for %s: OS %q / version %q must be plain names", mac, p.OS, p.Version)
	case !safeToken.MatchString(p.Token):
		return p, fmt.Errorf("install config for %s: no token, or one that is not 16-128 letters, digits, - or _", mac)
	case len(bytes.TrimSpace(p.SigningKey)) == 0:
		return p, fmt.Errorf("install config for %s: no image signing key for %s %s", mac, p.OS, p.Version)
	}
	if _, err := ParseDiskRule(p.Disk); err != nil {
		return p, fmt.Errorf("install config for %s: %w", mac, err)
	}
	return p, nil
}

// Install returns the install-phase config of one node (contract §3).
func Install(p InstallParams) ([]byte, error) {
	p, err := p.check()
	if err != nil {
		return nil, err
	}
	stub, err := bootStub(p.BaseURL, p.MAC, p.Token)
	if err != nil {
		return nil, err
	}
	cfg := types.Config{Ignition: types.Ignition{Version: Version}}
	cfg.Storage.Files = []types.File{
		file(InstallScriptPath, 0o755, []byte(installScript(p))),
		file(BootStubPath, 0o600, stub),
		file(SigningKeyPath, 0o644, p.SigningKey),
	}
	cfg.Systemd.Units = []types.Unit{unit(InstallUnit, installUnit)}
	return marshalValid(cfg, "install config for "+p.MAC)
}

// bootStub is what flatcar-install stores for the installed system's first
// boot: it only points at the node's boot config, so the config the node
// applies is always the one Racker serves at that moment. The fetch
// presents the node's token in an HTTP header (Ignition's httpHeaders,
// spec 3.1 and later), never in the URL.
func bootStub(baseURL, mac, token string) ([]byte, error) {
	src := IgnitionURL(baseURL, mac, "boot")
	cfg := types.Config{Ignition: types.Ignition{Version: Version}}
	cfg.Ignition.Config.Replace.Source = &src
	auth := tokenValue(token)
	cfg.Ignition.Config.Replace.HTTPHeaders = types.HTTPHeaders{{Name: TokenHeader, Value: &auth}}
	return marshalValid(cfg, "boot stub for "+mac)
}

// TokenHeader and tokenValue are how a node presents its token
// (api.TokenHeader, api.TokenScheme; kept here as text so the configs
// package stays free of the server's).
const TokenHeader = "Authorization"

func tokenValue(token string) string { return "Bearer " + token }

// IgnitionURL is where a node fetches its config for a phase.
func IgnitionURL(baseURL, mac, phase string) string {
	return strings.TrimRight(baseURL, "/") + "/ignition?mac=" + mac + "&phase=" + phase
}

// Boot returns the boot-phase config of one node (contract §4).
func Boot(p BootParams) ([]byte, error) {
	mac, err := inventory.NormalizeMAC(p.MAC)
	if err != nil {
		return nil, fmt.Errorf("boot config: %w", err)
	}
	base := strings.TrimRight(p.BaseURL, "/")
	switch {
	case !safeURL.MatchString(base):
		return nil, fmt.Errorf("boot config for %s: base URL %q is not a plain http(s) URL", mac, base)
	case !safeHost.MatchString(p.Hostname):
		return nil, fmt.Errorf("boot config for %s: hostname %q is not a valid host name", mac, p.Hostname)
	case !p.Address.IsValid():
		return nil, fmt.Errorf("boot config for %s: no internal address", mac)
	case len(p.SSHKeys) == 0:
		return nil, fmt.Errorf("boot config for %s: no SSH key for the core user (run racker factory gen-ssh-key)", mac)
	case !safeToken.MatchString(p.Token):
		return nil, fmt.Errorf("boot config for %s: no token, or one that is not 16-128 letters, digits, - or _", mac)
	}
	cfg := types.Config{Ignition: types.Ignition{Version: Version}}
	cfg.Storage.Files = []types.File{
		file(HostnamePath, 0o644, []byte(p.Hostname+"\n")),
		file(NetworkFilePath, 0o644, []byte(networkFile(mac, p.Address))),
		file(LabelsPath, 0o644, []byte(labelsFile(p.Labels))),
	}
	core := types.PasswdUser{Name: CoreUser}
	for _, k := range p.SSHKeys {
		core.SSHAuthorizedKeys = append(core.SSHAuthorizedKeys, types.SSHAuthorizedKey(strings.TrimSpace(k)))
	}
	cfg.Passwd.Users = []types.PasswdUser{core}
	cfg.Systemd.Units = []types.Unit{unit(BootedUnit, bootedUnit(base, mac, p.Token))}

	for _, s := range p.Snippets {
		frag, rpt, err := v3_4.ParseCompatibleVersion(s.JSON)
		if err != nil {
			return nil, fmt.Errorf("boot config for %s: snippet %s is not a valid Ignition config (spec ≤ %s): %w; %s", mac, s.Name, Version, err, rpt.String())
		}
		frag.Ignition = types.Ignition{Version: Version} // a snippet may not redirect or replace the config
		cfg = v3_4.Merge(cfg, frag)
	}
	return marshalValid(cfg, "boot config for "+mac)
}

func networkFile(mac string, addr netip.Prefix) string {
	return fmt.Sprintf("# Racker: the node's static address on the rack's internal network.\n[Match]\nMACAddress=%s\n\n[Network]\nDHCP=no\nAddress=%s\n", mac, addr)
}

func labelsFile(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, labels[k])
	}
	return b.String()
}

func bootedUnit(base, mac, token string) string {
	return `[Unit]
Description=Racker: report that the installed system booted
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/curl -fsS -X POST -H "Content-Type: application/json" -H "` + TokenHeader + `: ` + tokenValue(token) + `" --data-binary '{"mac":"` + mac + `","event":"booted"}' ` + base + `/api/v1/events
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
`
}

const installUnit = `[Unit]
Description=Racker: install the OS to disk
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=` + InstallScriptPath + `

[Install]
WantedBy=multi-user.target
`

func file(path string, mode int, data []byte) types.File {
	src := "data:;base64," + base64.StdEncoding.EncodeToString(data)
	overwrite := true
	f := types.File{Node: types.Node{Path: path, Overwrite: &overwrite}}
	f.Contents.Source = &src
	f.Mode = &mode
	return f
}

func unit(name, contents string) types.Unit {
	enabled := true
	return types.Unit{Name: name, Enabled: &enabled, Contents: &contents}
}

// marshalValid encodes cfg and parses it back with Ignition's own parser,
// so an invalid config is an error here rather than a node stuck in its
// initramfs.
func marshalValid(cfg types.Config, what string) ([]byte, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	if _, rpt, err := v3_4.Parse(b); err != nil {
		return nil, fmt.Errorf("validating %s: %w: %s", what, err, rpt.String())
	}
	return b, nil
}
