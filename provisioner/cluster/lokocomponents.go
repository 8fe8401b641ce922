package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// Component files, one per upstream choice, each next to baremetal.lokocfg.
const (
	WebUIFile   = "web-ui.lokocfg"
	RookFile    = "rook.lokocfg"
	OpenEBSFile = "openebs.lokocfg"
	VeleroFile  = "velero.lokocfg"
)

// webUI is upstream's web UI choice: the UI and the metrics it shows.
const webUI = `# Written by racker bootstrap --provision lokomotive: the web UI.
component "web-ui" {}

component "metrics-server" {}
`

// rook runs Ceph on the storage nodes (label storage.lokomotive.io=rook)
// and makes its block storage class the default.
const rook = `# Written by racker bootstrap --provision lokomotive: Rook Ceph on the storage nodes.
variable "rook_monitor_count" {}

component "rook" {
  node_selector = {
    "storage.lokomotive.io" = "rook"
  }

  csi_plugin_node_selector = {
    "storage.lokomotive.io" = "rook"
  }
}

component "rook-ceph" {
  monitor_count = var.rook_monitor_count

  node_affinity {
    key      = "storage.lokomotive.io"
    operator = "In"
    values   = ["rook"]
  }

  storage_class {
    enable  = true
    default = true
  }
}
`

// openEBS runs cStor on the storage nodes (its node disk manager selects
// storage.lokomotive.io=openebs) with one replica per storage node, at most 3.
const openEBS = `# Written by racker bootstrap --provision lokomotive: OpenEBS cStor on the storage nodes.
variable "openebs_replica_count" {}

component "openebs-operator" {
  ndm_selector_label = "storage.lokomotive.io"
  ndm_selector_value = "openebs"
}

component "openebs-storage-class" {
  storage-class "openebs-cstor" {
    replica_count = var.openebs_replica_count
    default       = true
  }
}
`

// velero backs up to S3 with restic; the AWS credentials are read from a
// file of mode 0600 when lokoctl applies the component.
const velero = `# Written by racker bootstrap --provision lokomotive: backups to S3 with Velero.
variable "backup_name" {}
variable "backup_s3_bucket_name" {}
variable "backup_aws_region" {}
variable "backup_credentials_path" {}

component "velero" {
  namespace = "velero"
  provider  = "restic"

  restic {
    credentials = file(var.backup_credentials_path)

    backup_storage_location {
      name     = var.backup_name
      provider = "aws"
      bucket   = var.backup_s3_bucket_name
      region   = var.backup_aws_region
    }
  }
}
`

// writeComponents writes the component files the input asks for, removes
// the others (a choice turned off since the last run), and returns the
// lines they need in lokocfg.vars.
func (c *lokoConfig) writeComponents() (string, error) {
	comp := c.in.Components
	want := map[string]string{}
	var w hclWriter
	if comp.WebUI {
		want[WebUIFile] = webUI
	}
	replicas := min(len(c.storageNodes()), 3)
	switch c.storage {
	case StorageRook:
		want[RookFile] = rook
		// Ceph monitors need a majority: 3 when there are 3 storage nodes.
		w.attr("rook_monitor_count", fmt.Sprint(map[bool]int{true: 3, false: 1}[replicas == 3]))
	case StorageOpenEBS:
		want[OpenEBSFile] = openEBS
		w.attr("openebs_replica_count", fmt.Sprint(replicas))
	}
	credPath := filepath.Join(c.dir, BackupCredentialsFile)
	if b := comp.Backup; b != nil {
		want[VeleroFile] = velero
		name := b.Name
		if name == "" {
			name = "lokomotive-backup"
		}
		w.attr("backup_name", hclString(name))
		w.attr("backup_s3_bucket_name", hclString(b.Bucket))
		w.attr("backup_aws_region", hclString(b.Region))
		w.attr("backup_credentials_path", hclString(credPath))
		creds := "[default]\naws_access_key_id=" + b.AccessKeyID + "\naws_secret_access_key=" + b.SecretAccessKey + "\n"
		if err := atomicfile.Write(credPath, []byte(creds), 0o600); err != nil {
			return "", fmt.Errorf("writing velero's credentials: %w", err)
		}
	} else if err := os.Remove(credPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("removing velero's old credentials: %w", err)
	}
	for _, f := range []string{WebUIFile, RookFile, OpenEBSFile, VeleroFile} {
		path := filepath.Join(c.dir, f)
		body, ok := want[f]
		if !ok {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("removing %s: %w", path, err)
			}
			continue
		}
		if err := atomicfile.Write(path, []byte(body), 0o644); err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return strings.TrimPrefix(w.String(), "\n"), nil
}
