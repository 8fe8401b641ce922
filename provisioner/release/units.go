package release

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// Local settings of the installed units live beside them, never in them:
// /etc/racker/racker.env (the RACKER_* variables racker serve's unit
// reads) and drop-ins (systemctl edit racker-serve, i.e.
// /etc/systemd/system/racker-serve.service.d/*.conf). An install replaces
// a unit file only while it is one a Racker release shipped; a unit
// changed by hand is kept, the release's is written next to it as
// NAME.racker-new, and the result says how to move the changes.

// EnvFile is the units' settings file on the host.
const EnvFile = "/etc/racker/racker.env"

// NewUnitSuffix names the release's unit written beside a changed one.
const NewUnitSuffix = ".racker-new"

// envTemplate is EnvFile as first written (never overwritten after).
const envTemplate = `# Settings of racker serve: racker-serve.service reads this file
# (EnvironmentFile=), racker install and update never overwrite it.
#
# Every global flag of racker has a variable, used when the flag is not
# given: RACKER_OEM_DIR, RACKER_STATE_DIR, RACKER_INSTALL_DIR,
# RACKER_LOG_FORMAT, RACKER_VERBOSE, RACKER_MGMT_MAC, RACKER_PXE_INTERFACE.
# RACKER_SERVE_FLAGS adds flags of racker serve itself (its unit passes it).
# The rack's choices (subnet, cluster name, OS, …) are not set here: the
# first racker plan or bootstrap saves them in STATE/plan.json.
#
# Changes take effect with: systemctl restart racker-serve
#
#RACKER_PXE_INTERFACE=eth1
#RACKER_SERVE_FLAGS=--http-port 8080
`

// writeUnit installs the unit file name with data into unitDir; changed
// says whether the installed unit changed (systemd must reload), fresh that
// there was none before (it is enabled and started).
func (in *Installer) writeUnit(unitDir, name string, data []byte, res *Result) (changed, fresh bool, err error) {
	dst := filepath.Join(unitDir, name)
	old, err := os.ReadFile(dst)
	switch {
	case err == nil && bytes.Equal(old, data):
		os.Remove(dst + NewUnitSuffix) // a stale one from an earlier install
		return false, false, nil
	case err == nil && !in.shipped(name, old):
		if err := atomicfile.Write(dst+NewUnitSuffix, data, 0o644); err != nil {
			return false, false, fmt.Errorf("installing unit %s: %w", name, err)
		}
		note := fmt.Sprintf("%s was changed on this host: kept it, and wrote this release's unit as %s%s. "+
			"Move the local changes to a drop-in (systemctl edit %s) or to %s, then replace the unit with the new one",
			dst, dst, NewUnitSuffix, name, EnvFile)
		res.Notes = append(res.Notes, note)
		in.log().Warn("unit changed locally; not replaced", "unit", dst, "new", dst+NewUnitSuffix)
		return false, false, nil
	case err != nil && !os.IsNotExist(err):
		return false, false, fmt.Errorf("installing unit %s: %w", name, err)
	}
	fresh = os.IsNotExist(err)
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return false, false, fmt.Errorf("installing unit %s: %w", name, err)
	}
	os.Remove(dst + NewUnitSuffix)
	return true, fresh, nil
}

// shipped says whether content is the unit name as some installed Racker
// version shipped it (so replacing it loses nothing of the host's).
func (in *Installer) shipped(name string, content []byte) bool {
	versions, _ := os.ReadDir(in.Layout.versions())
	for _, v := range versions {
		b, err := os.ReadFile(filepath.Join(in.Layout.versions(), v.Name(), UnitsDir, name))
		if err == nil && bytes.Equal(b, content) {
			return true
		}
	}
	return false
}

// writeEnvFile writes EnvFile with its comments when the host has none.
func (in *Installer) writeEnvFile(res *Result) error {
	path := in.Layout.at(EnvFile)
	if _, err := os.Stat(path); err == nil || !os.IsNotExist(err) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", EnvFile, err)
	}
	if err := atomicfile.Write(path, []byte(envTemplate), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", EnvFile, err)
	}
	res.Notes = append(res.Notes, "wrote "+EnvFile+": racker serve's local settings go there, or in drop-ins (systemctl edit racker-serve); the unit file itself is replaced by updates")
	return nil
}
