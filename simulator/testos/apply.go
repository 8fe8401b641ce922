package testos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Apply writes a resolved config's files, directories, SSH keys and units
// under root ("/" on the node, a temp dir in tests), and enables, disables
// or masks units as systemctl would; EnabledUnits then lists what a boot
// starts. On an installed system root's /etc, /home, /opt … are on the ROOT
// partition, so all of it persists.
func Apply(ctx context.Context, root string, c *Config, f Fetcher, say func(string)) error {
	for _, d := range c.Storage.Directories {
		mode := os.FileMode(0o755)
		if d.Mode != nil {
			mode = os.FileMode(*d.Mode)
		}
		if err := os.MkdirAll(under(root, d.Path), mode); err != nil {
			return fmt.Errorf("while creating directory %s: %w", d.Path, err)
		}
	}
	for _, file := range c.Storage.Files {
		if err := writeFile(ctx, root, file, f); err != nil {
			return err
		}
		say(fmt.Sprintf("wrote %s (mode %#o)", file.Path, fileMode(file)))
	}
	for _, u := range c.Passwd.Users {
		if len(u.SSHAuthorizedKeys) == 0 {
			continue
		}
		home := "/home/" + u.Name
		if u.Name == "root" {
			home = "/root"
		}
		dir := under(root, home+"/.ssh")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("while creating %s/.ssh for user %s: %w", home, u.Name, err)
		}
		keys := strings.Join(u.SSHAuthorizedKeys, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(keys), 0o600); err != nil {
			return fmt.Errorf("while writing SSH keys for user %s: %w", u.Name, err)
		}
		say(fmt.Sprintf("user %s: %d SSH key(s) in %s/.ssh/authorized_keys", u.Name, len(u.SSHAuthorizedKeys), home))
	}
	for _, u := range c.Systemd.Units {
		if u.Contents != nil {
			path := filepath.Join(root, unitDir, u.Name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("while creating the unit folder: %w", err)
			}
			_ = os.Remove(path)
			if err := os.WriteFile(path, []byte(*u.Contents), 0o644); err != nil {
				return fmt.Errorf("while writing unit %s: %w", u.Name, err)
			}
		}
		for _, d := range u.Dropins {
			if d.Contents == nil {
				continue
			}
			path := filepath.Join(root, unitDir, u.Name+".d", d.Name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("while creating the drop-in folder of %s: %w", u.Name, err)
			}
			if err := os.WriteFile(path, []byte(*d.Contents), 0o644); err != nil {
				return fmt.Errorf("while writing drop-in %s of %s: %w", d.Name, u.Name, err)
			}
		}
		switch {
		case u.Mask != nil && *u.Mask:
			if err := maskUnit(root, u.Name); err != nil {
				return err
			}
			say(fmt.Sprintf("unit %s masked", u.Name))
		case u.Enabled != nil && *u.Enabled:
			if err := enableUnit(root, u.Name, say); err != nil {
				return err
			}
		case u.Enabled != nil:
			disableUnit(root, u.Name)
		}
	}
	return nil
}

func fileMode(f File) os.FileMode {
	if f.Mode != nil {
		return os.FileMode(*f.Mode)
	}
	return 0o644
}

func writeFile(ctx context.Context, root string, file File, f Fetcher) error {
	if !strings.HasPrefix(file.Path, "/") {
		return fmt.Errorf("file path %q is not absolute", file.Path)
	}
	data, err := fetchResource(ctx, f, file.Contents)
	if err != nil {
		return fmt.Errorf("while fetching the contents of %s: %w", file.Path, err)
	}
	for _, a := range file.Append {
		more, err := fetchResource(ctx, f, a)
		if err != nil {
			return fmt.Errorf("while fetching appended contents of %s: %w", file.Path, err)
		}
		data = append(data, more...)
	}
	path := under(root, file.Path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while creating the folder of %s: %w", file.Path, err)
	}
	// Remove first so a new mode applies and a running executable can be replaced.
	_ = os.Remove(path)
	if err := os.WriteFile(path, data, fileMode(file)); err != nil {
		return fmt.Errorf("while writing %s: %w", file.Path, err)
	}
	return os.Chmod(path, fileMode(file))
}

// under joins an absolute config path onto root without letting ".." escape it.
func under(root, p string) string {
	return filepath.Join(root, filepath.Clean("/"+p))
}
