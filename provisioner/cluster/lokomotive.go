package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/racker/racker/provisioner/plan"
)

// Files of the lokomotive profile, in STATE/lokomotive. Racker writes them
// on every bootstrap; an operator's own settings go into another *.lokocfg
// file in the same folder, which lokoctl reads too.
const (
	LokomotiveDir  = "lokomotive"
	LokocfgFile    = "baremetal.lokocfg"
	LokocfgVarFile = "lokocfg.vars"
	// SnippetDir holds the per-node Container Linux Config snippets.
	SnippetDir = "cl"
	// BackupCredentialsFile is velero's AWS credentials (mode 0600).
	BackupCredentialsFile = "backup-credentials"
	// AssetDir is lokoctl's asset folder (Terraform state, cluster secrets).
	AssetDir = "lokoctl-assets"
)

// DefaultDomain is the cluster's DNS domain unless --domain says otherwise
// (upstream Racker's default).
const DefaultDomain = "k8s.localdomain"

// DefaultKernelConsole matches the console Racker's own iPXE scripts give
// the nodes (the serial console behind the BMC's serial-over-LAN).
var DefaultKernelConsole = []string{"console=tty0", "console=ttyS0,115200n8"}

// Matchbox API of the rack, as lokoctl's Terraform provider reaches it: a
// gRPC endpoint with mutual TLS. The client certificate and the CA live in
// the state folder (MatchboxClientDir), as upstream Racker kept them.
type Matchbox struct {
	Endpoint       string // host:port of the gRPC API (matchbox_endpoint)
	CAPath         string
	ClientCertPath string
	ClientKeyPath  string
}

// Matchbox defaults: upstream's port and certificate folder, where the
// boot services' embedded matchbox listens and writes its client bundle
// (bootsvc/api's MatchboxRPCPort and MatchboxClientDir; not imported here,
// which would bring Prometheus into the conformance module, and checked
// equal by the bootstrap tests).
const (
	MatchboxRPCPort   = 8081
	MatchboxClientDir = "matchbox-client"
)

// DefaultMatchbox is the matchbox API of `racker serve` on the management
// node: its internal address, upstream's port, and the client certificate
// in STATE/matchbox-client/{ca.crt,client.crt,client.key}.
func DefaultMatchbox(stateDir string, p *plan.Plan) Matchbox {
	dir := filepath.Join(stateDir, MatchboxClientDir)
	return Matchbox{
		Endpoint:       netip.AddrPortFrom(p.Management.IP, MatchboxRPCPort).String(),
		CAPath:         filepath.Join(dir, "ca.crt"),
		ClientCertPath: filepath.Join(dir, "client.crt"),
		ClientKeyPath:  filepath.Join(dir, "client.key"),
	}
}

// Storage providers, as upstream Racker offered them.
const (
	StorageNone    = "none"
	StorageRook    = "rook"
	StorageOpenEBS = "openebs"
)

// Components are the Lokomotive components a rack gets beyond the
// platform (upstream Racker's wizard choices).
type Components struct {
	// WebUI installs the web UI and metrics-server.
	WebUI bool
	// Storage is StorageNone (or ""), StorageRook or StorageOpenEBS; the
	// plan's storage nodes carry the provider's label.
	Storage string
	// Backup configures velero (restic to S3) when set.
	Backup *Backup
}

// Backup is velero's S3 target and credentials. The keys go into a file
// of mode 0600 next to the configuration, never into a .lokocfg file.
type Backup struct {
	Name            string // backup storage location name (default "lokomotive-backup")
	Bucket          string
	Region          string
	AccessKeyID     string
	SecretAccessKey string
}

// ErrNoLokoctl says lokoctl (or the terraform it runs) is not installed:
// the lokomotive profile cannot be applied on this machine.
var ErrNoLokoctl = errors.New("lokoctl is not installed")

// LookTool finds an executable the way Racker's own release ships it:
// next to the running racker (the same release's bin/), then on PATH.
func LookTool(name string) (string, error) {
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			p := filepath.Join(filepath.Dir(real), name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return exec.LookPath(name)
}

// LokomotiveTools finds lokoctl and the terraform it runs; the error wraps
// ErrNoLokoctl and says what to do instead.
func LokomotiveTools(look func(string) (string, error)) (lokoctl, terraform string, err error) {
	if look == nil {
		look = LookTool
	}
	lokoctl, err = look("lokoctl")
	if err != nil {
		return "", "", fmt.Errorf("--provision lokomotive: %w (looked next to racker and on PATH): install a Racker release built with lokoctl and terraform (make image WITH=lokoctl,terraform), or use --provision flatcar", ErrNoLokoctl)
	}
	terraform, err = look("terraform")
	if err != nil {
		return "", "", fmt.Errorf("--provision lokomotive: %w: lokoctl is at %s but the terraform v0.13 it runs is not; install a Racker release built with lokoctl and terraform (make image WITH=lokoctl,terraform), or use --provision flatcar", ErrNoLokoctl, lokoctl)
	}
	return lokoctl, terraform, nil
}

// lokoctlArgs is the command that applies the configuration, run in its folder.
var lokoctlArgs = []string{"cluster", "apply", "--confirm", "--verbose"}

func applyLokomotive(ctx context.Context, in Input) error {
	bin, _, err := LokomotiveTools(in.LookPath)
	if err != nil {
		return err
	}
	dir := filepath.Join(in.StateDir, LokomotiveDir)
	cfgPath, varsPath, err := WriteLokomotive(dir, in)
	if err != nil {
		return err
	}
	in.Logger.Info("wrote the Lokomotive configuration", "config", cfgPath, "vars", varsPath)
	run := in.Run
	if run == nil {
		run = func(ctx context.Context, dir, bin string, args ...string) error {
			return runLokoctl(ctx, in.Stdout, dir, bin, args...)
		}
	}
	step := "lokoctl " + strings.Join(lokoctlArgs, " ")
	in.Logger.Info("running lokoctl", "dir", dir, "args", strings.Join(lokoctlArgs, " "))
	fmt.Fprintf(in.Stdout, "bootstrap: step %q in %s\n", step, dir)
	if err := run(ctx, dir, bin, lokoctlArgs...); err != nil {
		return fmt.Errorf("step %q in %s failed: %w", step, dir, err)
	}
	fmt.Fprintf(in.Stdout, "bootstrap: step %q done\n", step)
	return nil
}
