package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/cluster"
)

// componentFlags are the Lokomotive components bootstrap installs beyond
// the platform, as upstream Racker's wizard offered them: the web UI,
// storage, and backup with velero to S3. The rack remembers them like its
// other choices (choices.go).
type componentFlags struct {
	webUI   bool
	storage string
	// backup: enabled by a bucket; the AWS keys come from a file (never
	// from the command line, where ps and shell history would show them).
	backupBucket, backupRegion, backupName, backupCredentials string
}

// DefaultBackupRegion and DefaultBackupName are upstream Racker's defaults.
const (
	DefaultBackupRegion = "us-east-2"
	DefaultBackupName   = "lokomotive-backup"
)

func addComponentFlags(fs *pflag.FlagSet, f *componentFlags) {
	fs.BoolVar(&f.webUI, "web-ui", false, "lokomotive: install the web UI (and metrics-server)")
	fs.StringVar(&f.storage, "storage", cluster.StorageNone, "lokomotive: storage provider on the storage nodes (--storage-type, --storage-nodes): none, rook or openebs")
	fs.StringVar(&f.backupBucket, "backup-bucket", "", "lokomotive: back the cluster up with velero to this S3 bucket (empty: no backup)")
	fs.StringVar(&f.backupRegion, "backup-region", DefaultBackupRegion, "lokomotive: the backup bucket's AWS region")
	fs.StringVar(&f.backupName, "backup-name", DefaultBackupName, "lokomotive: the backup storage location's name")
	fs.StringVar(&f.backupCredentials, "backup-credentials", "", "lokomotive: AWS credentials file for the backup ([default] aws_access_key_id = …, aws_secret_access_key = …; mode 0600)")
}

// components checks the flags and reads the backup's keys.
func (f *componentFlags) components() (cluster.Components, error) {
	c := cluster.Components{WebUI: f.webUI, Storage: f.storage}
	switch f.storage {
	case "", cluster.StorageNone, cluster.StorageRook, cluster.StorageOpenEBS:
	default:
		return c, fmt.Errorf("--storage %q: want none, rook or openebs", f.storage)
	}
	if f.backupBucket == "" {
		return c, nil
	}
	if f.backupCredentials == "" {
		return c, fmt.Errorf("--backup-bucket %s: the AWS keys are missing: give them in a file with --backup-credentials", f.backupBucket)
	}
	id, secret, err := readAWSCredentials(f.backupCredentials)
	if err != nil {
		return c, fmt.Errorf("--backup-credentials: %w", err)
	}
	c.Backup = &cluster.Backup{Name: f.backupName, Bucket: f.backupBucket, Region: f.backupRegion, AccessKeyID: id, SecretAccessKey: secret}
	return c, nil
}

// readAWSCredentials reads the keys of an AWS shared credentials file
// (its [default] section, or the only one).
func readAWSCredentials(path string) (id, secret string, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' || s[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return "", "", fmt.Errorf("%s:%d: want key = value", path, line)
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%s: aws_access_key_id and aws_secret_access_key are both required", path)
	}
	return id, secret, nil
}

// writeAWSCredentials saves keys the wizard was given, mode 0600.
func writeAWSCredentials(path, id, secret string) error {
	body := "[default]\naws_access_key_id = " + id + "\naws_secret_access_key = " + secret + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}
