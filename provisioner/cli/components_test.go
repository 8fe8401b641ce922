package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The component flags: bad values are errors naming the flag; the backup
// keys come only from a file, which must hold both.
func TestComponentFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "aws")
	os.WriteFile(good, []byte("# keys\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n"), 0o600)
	half := filepath.Join(dir, "half")
	os.WriteFile(half, []byte("[default]\naws_access_key_id = AKIA1\n"), 0o600)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("[default]\nnot a key line\n"), 0o600)

	c, err := (&componentFlags{webUI: true, storage: "openebs", backupBucket: "b", backupRegion: "r", backupName: "n", backupCredentials: good}).components()
	if err != nil || !c.WebUI || c.Storage != "openebs" || c.Backup == nil || c.Backup.AccessKeyID != "AKIA1" || c.Backup.SecretAccessKey != "s3cr3t" || c.Backup.Bucket != "b" {
		t.Fatalf("good flags: %+v, %v", c, err)
	}
	if c, err := (&componentFlags{storage: "none"}).components(); err != nil || c.Backup != nil {
		t.Errorf("no bucket means no backup: %+v, %v", c, err)
	}
	for name, tc := range map[string]struct {
		f    componentFlags
		want string
	}{
		"storage":       {componentFlags{storage: "ceph"}, `--storage "ceph"`},
		"no keys":       {componentFlags{backupBucket: "b"}, "--backup-credentials"},
		"missing file":  {componentFlags{backupBucket: "b", backupCredentials: filepath.Join(dir, "nope")}, "no such file"},
		"half the keys": {componentFlags{backupBucket: "b", backupCredentials: half}, "both required"},
		"not key = val": {componentFlags{backupBucket: "b", backupCredentials: junk}, junk + ":2: want key = value"},
	} {
		if _, err := tc.f.components(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}
